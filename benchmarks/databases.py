"""Database setup: the MariaDB server, the run's workspace with a fresh schema per measurement, the VIP caller."""
import os
import shutil
import sys
import tempfile
import time
from contextlib import closing

import pymysql

import private_mariadb  # tests/private_mariadb.py
from agi_scripts.config import NumberPlan, load, parse_database_url
from agi_scripts.database import Database
from agi_scripts.dialects import MySQL
from agi_scripts.number_keys import number_key
from agi_scripts.schema import install_schema
from processes import ChildEnvironments

PRIVATE = "private"  # --mysql private: a throwaway server of our own instead of a URL
HIT_NUMBER = "8 (913) 075-15-80"  # the VIP / sticky caller of sections a and d
HIT_KEY = number_key(HIT_NUMBER, NumberPlan())
AGENT = "PJSIP/alena"
QUEUE = "support"


class MariaDB:
    """The MariaDB server at a URL: only databases named vsbench_<pid>_* are created, and all
    dropped. `private` is the tests' PrivateMariaDB behind the URL, stopped on close()."""

    def __init__(self, url, private=None):
        self.settings = parse_database_url(url)
        self.private = private
        self.prefix = "vsbench_%d_" % os.getpid()
        self.created = []

    def connect(self, database=None):
        # No read timeout: filling and dropping a million-row database takes a while.
        return pymysql.connect(**MySQL.connect_params(self.settings, database=database, connect_timeout=5,
                                                      read_timeout=None, write_timeout=None))

    def url(self, database):
        """The server's URL with another database name."""
        base, mark, query = self.settings.url.partition("?")
        return "%s/%s%s%s" % (base.rsplit("/", 1)[0], database, mark, query)

    def execute(self, *statements):
        """Run server-level statements; the last one's rows."""
        with closing(self.connect()) as connection, connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            return cursor.fetchall()

    def create(self, what):
        """A new empty database vsbench_<pid>_<what>; returns its name."""
        name = self.prefix + what
        self.execute("DROP DATABASE IF EXISTS %s" % name, "CREATE DATABASE %s CHARACTER SET utf8mb4" % name)
        self.created.append(what)
        return name

    def drop(self, what):
        self.execute("DROP DATABASE IF EXISTS %s" % (self.prefix + what))
        if what in self.created:
            self.created.remove(what)

    def version(self):
        return self.execute("SELECT VERSION(), @@innodb_buffer_pool_size")[0]

    def close(self):
        for what in list(self.created):
            try:
                self.drop(what)
            except Exception as error:  # keep dropping the others
                print("warning: could not drop %s: %s" % (self.prefix + what, error), file=sys.stderr)
        if self.private is not None:
            self.private.stop()


def open_mariadb(url, tmp):
    """The server named by --mysql: a URL, or PRIVATE to start one in `tmp`."""
    if url != PRIVATE:
        return MariaDB(url)
    if not private_mariadb.available():
        raise SystemExit("--mysql %s: mariadb-install-db or mariadbd not found" % PRIVATE)
    private = private_mariadb.PrivateMariaDB(os.path.join(tmp, "mariadb"))
    try:
        private.install()
        private.start()
    except BaseException:
        private.kill()
        raise
    return MariaDB(private.url("mysql"), private)


def install(config, addressbook=False):
    """Install the schema (and the address-book function and triggers); returns what was done."""
    database = Database(config.database, query_timeout=3600)
    try:
        return install_schema(database, config, addressbook=addressbook)
    finally:
        database.close()


def seed_caller(config, sticky=False):
    """HIT_NUMBER as a VIP (priority 10) and, when sticky, bound to AGENT in QUEUE."""
    database = Database(config.database)
    database.vip_add(HIT_KEY, 10, "Bench VIP")
    if sticky:
        database.remember(HIT_KEY, QUEUE, AGENT, 86400)
    database.close()


class Workspace:
    """The run's temporary folder: config files, SQLite files, bytecode cache, and the
    MariaDB server (--mysql) the measurements create their databases on."""

    def __init__(self, mysql_url):
        self.tmp = tempfile.mkdtemp(prefix="vsbench_")
        self.children = ChildEnvironments(self.tmp)
        try:
            self.server = open_mariadb(mysql_url, self.tmp)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def env(self, config_path, bytecode_cache=True):
        return self.children.env(config_path, bytecode_cache)

    def config(self, name, url, extra=""):
        """A config file; the calls' outcomes go to a spool of its own in the folder (as on an
        Asterisk host: recorded, by default) unless extra has a [log] section."""
        path = os.path.join(self.tmp, name + ".conf")
        if "[log]" not in extra:
            extra += "\n[log]\nevents_spool = %s\n" % os.path.join(self.tmp, name + "-events.log")
        with open(path, "w") as handle:
            handle.write("[database]\nurl = %s\nconnect_timeout = 2\n%s" % (url, extra))
        return path

    def setup(self, name, dialect, extra=""):
        """A fresh installed schema; returns (config path, Config)."""
        if dialect == "mysql":
            url = self.server.url(self.server.create(name))
        else:
            url = "sqlite:///%s" % os.path.join(self.tmp, name + ".sqlite3")
        path = self.config(name, url, extra)
        config = load(path)
        install(config)
        return path, config

    def drop(self, name, dialect):
        """Drop what setup(name, dialect) made on MariaDB (SQLite files go with the folder)."""
        if dialect == "mysql":
            self.server.drop(name)

    def cleanup(self):
        self.server.close()
        for _ in range(10):  # a script spawned just before an interrupt may still write its bytecode cache
            shutil.rmtree(self.tmp, ignore_errors=True)
            if not os.path.exists(self.tmp):
                return
            time.sleep(0.3)
