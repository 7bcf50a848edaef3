"""Shared fixtures: a real MariaDB (one fresh database per test) and SQLite files.

MariaDB comes from VIPSTICKY_TEST_MYSQL (default mysql://root@127.0.0.1:3306/test);
a test that needs it FAILS when the server cannot be reached: .ci/run starts it.
"""
import os
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Dict, Optional

import pymysql
import pytest

from agi_scripts.config import load
from agi_scripts.db import Database
from agi_scripts.peer import Asterisk, Peer

SERVER_URL = os.environ.get("VIPSTICKY_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
DIALECTS = ("sqlite", "mariadb")


def server_params():
    from agi_scripts.config import parse_database_url
    settings = parse_database_url(SERVER_URL)
    return dict(host=settings.host, port=settings.port, user=settings.user, password=settings.password or "",
                unix_socket=settings.unix_socket, connect_timeout=5, autocommit=True, ssl_disabled=True)


def server_connection(database=None):
    try:
        return pymysql.connect(database=database, **server_params())
    except pymysql.err.OperationalError as error:
        pytest.fail("MariaDB at %s is not reachable (%s): start it (.ci/run does)" % (SERVER_URL, error.args[-1]))


@dataclass
class Setup:
    """One test's database, config file and process environment."""
    dialect: str
    url: str
    path: str  # config file
    env: Dict[str, str]
    mysql_database: Optional[str] = None

    @property
    def config(self):
        return load(self.path)

    def database(self, **options) -> Database:
        return Database(self.config.database, **options)

    def rewrite(self, extra: str = "") -> None:
        """Rewrite the config file with the same database url plus extra INI text."""
        with open(self.path, "w") as handle:
            handle.write("[database]\nurl = %s\nconnect_timeout = 2\n%s" % (self.url, extra))

    def query(self, *statements):
        """Rows of each SELECT, read straight from the database (not through the code under
        test), plus the database clock's now: (rows of statement 1, ..., now)."""
        if self.dialect == "sqlite":
            connection = sqlite3.connect(self.config.database.path)
            now = "CAST((julianday('now') - 2440587.5) * 86400 AS INTEGER)"
        else:
            connection = pymysql.connect(database=self.mysql_database, **server_params())
            now = "UNIX_TIMESTAMP()"
        try:
            cursor = connection.cursor()
            results = []
            for statement in statements + ("SELECT " + now,):
                cursor.execute(statement)
                results.append(cursor.fetchall())
            cursor.close()
        finally:
            connection.close()
        return tuple(results[:-1]) + (int(results[-1][0][0]),)

    def run(self, script, args, asterisk: Optional[Asterisk] = None, hangup=None, callerid="", **options):
        """Run an installed per-call script against this setup, as Asterisk does."""
        return Peer(asterisk, hangup=hangup).run_script(script, list(args), callerid=callerid,
                                                        process_env=self.env, **options)


def make_mysql_database(request) -> str:
    name = "vs_%s" % uuid.uuid4().hex[:12]
    connection = server_connection()
    with connection.cursor() as cursor:
        cursor.execute("CREATE DATABASE %s CHARACTER SET utf8mb4" % name)
    connection.close()

    def drop():
        final = server_connection()
        with final.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS %s" % name)
        final.close()
    request.addfinalizer(drop)
    return name


def build_setup(dialect, request, tmp_path, extra="", install=True) -> Setup:
    if dialect == "sqlite":
        url, database_name = "sqlite:///%s" % (tmp_path / "vipsticky.sqlite3"), None
    else:
        database_name = make_mysql_database(request)
        base = SERVER_URL.rsplit("/", 1)[0]
        url = "%s/%s" % (base, database_name)
    path = str(tmp_path / "vipsticky.conf")
    setup = Setup(dialect=dialect, url=url, path=path, env=dict(os.environ, VIPSTICKY_CONFIG=path),
                  mysql_database=database_name)
    setup.rewrite(extra)
    if install:
        database = setup.database()
        database.install_schema(setup.config)
        database.close()
    return setup


@pytest.fixture(params=DIALECTS)
def setup(request, tmp_path):
    """An installed schema on SQLite and on MariaDB (the test runs once for each)."""
    return build_setup(request.param, request, tmp_path)


@pytest.fixture
def mariadb(request, tmp_path):
    """An installed schema on MariaDB only."""
    return build_setup("mariadb", request, tmp_path)


@pytest.fixture
def sqlite(request, tmp_path):
    return build_setup("sqlite", request, tmp_path)


@pytest.fixture
def make_setup(request, tmp_path_factory):
    """make_setup(dialect, extra_ini='', install=True) for tests that need their own config."""
    def make(dialect, extra="", install=True):
        return build_setup(dialect, request, tmp_path_factory.mktemp(dialect), extra=extra, install=install)
    return make
