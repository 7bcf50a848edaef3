"""Helpers shared by the test files (fixtures live in conftest.py).

Import them as `from utils import ...`: pytest puts tests/ on sys.path when it loads
tests/conftest.py (rootdir-based "prepend" import mode, tests/ is no package).

- the shared MariaDB: SERVER_URL, server_params(), server_connection();
- Setup (one test's database, config file and environment) and build_setup();
- the CLI: vipsticky(where, *args), one_line(), assert_one_error_line();
- what a finished call must look like: assert_clean(), assert_failed_open(),
  check_vip_call() / vip_result();
- servers: BlackHole (a database that never answers), FastAGIServer (make_server in a
  thread), Served (`vipsticky serve` in a process; assert_clean_log() for its stderr),
  CallInFlight (a FastAGI call half done), AllIdle (every device idle);
- report_problems(): one assertion listing what went wrong in a batch of calls;
  report(): figures printed and kept in the junit XML;
- LoadRun: a load of scripted calls, each classified normal / failed open / a problem.
"""
import itertools
import os
import re
import signal
import socket
import socketserver
import sqlite3
import subprocess
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Dict, List, Optional

import pymysql
import pytest

from agi_scripts.asterisk_standin import Asterisk, Call, Peer, script_command
from agi_scripts.config import NumberPlan, load, parse_database_url
from agi_scripts.database import Database
from agi_scripts.dialects import MySQL
from agi_scripts.fastagi import make_server
from agi_scripts.number_keys import number_key
from agi_scripts.schema import install_schema
import private_mariadb

SERVER_URL = os.environ.get("VIPSTICKY_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
DIALECTS = ("sqlite", "mariadb")
PLAN = NumberPlan()  # the default number rules (Russia, area code 3843)
CLI_TIMEOUT = 120
# One call of each script, for tests that run every script against one database.
NUMBER = "+79120000001"
AGENT = "PJSIP/alena"
ONE_CALL_EACH = (
    ("vip_or_not", [NUMBER]),
    ("sticky_route", ["lookup", NUMBER]),
    ("sticky_route", ["remember", NUMBER, "", AGENT]),
    ("delnum", [NUMBER]),
)
# What each script sets when it fails (default normal_priority 5).
FAIL_OPEN = {
    "vip_or_not": {"QUEUE_PRIO": "5", "VIP": "0", "VIP_LABEL": ""},
    "sticky_route": {"STICKY_AGENT": "", "STICKY_STATUS": "error"},
    "delnum": {"DELNUM_STATUS": "error"},
}
VIP_VARIABLES = ("QUEUE_PRIO", "VIP", "VIP_LABEL")
VIP_NUMBERS = ["+7915%07d" % index for index in range(20)]  # LoadRun's VIPs (priority 10)
# The original setup's bindings table (the article this project grew from), per dialect.
ORIGINAL_DDL = {
    "mariadb": "CREATE TABLE numbers_remember (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, "
               "number varchar(80) UNIQUE, date varchar(80), agent varchar(120))",
    "sqlite": "CREATE TABLE numbers_remember (id INTEGER PRIMARY KEY AUTOINCREMENT, "
              "number varchar(80) UNIQUE, date varchar(80), agent varchar(120))",
}
free_port = private_mariadb.free_port  # a TCP port on 127.0.0.1 where nothing listens


# -- the shared MariaDB -------------------------------------------------------------------
def server_params(**overrides) -> dict:
    """pymysql.connect() keyword arguments for the shared server, no database selected:
    the package's own connect parameters, without its per-call read/write timeouts (a
    test's own connection may wait as long as the statement needs)."""
    params = MySQL.connect_params(parse_database_url(SERVER_URL), database=None, connect_timeout=5,
                                  read_timeout=None, write_timeout=None)
    params.update(overrides)
    return params


def server_connection(database=None):
    """A connection of the test's own to the shared server (or one of its databases)."""
    try:
        return pymysql.connect(**server_params(database=database))
    except pymysql.err.OperationalError as error:
        pytest.fail("MariaDB at %s is not reachable (%s): start it (.ci/run does)" % (SERVER_URL, error.args[-1]))


def events_ini(folder) -> str:
    """A [log] section that sends the calls' outcomes to a spool file in folder (the
    default, /var/lib/asterisk, is the Asterisk host's)."""
    return "\n[log]\nevents_spool = %s\n" % os.path.join(os.path.abspath(str(folder)), "events.log")


def write_config(path, url, connect_timeout=2, extra="") -> None:
    """A config file with the database url, its connect_timeout and extra INI text; the
    calls' outcomes go to a spool file beside it."""
    if "events_spool" not in extra:
        spool = events_ini(os.path.dirname(os.path.abspath(path)))
        extra = extra.replace("[log]\n", spool.lstrip("\n"), 1) if "[log]\n" in extra else extra + spool
    with open(path, "w") as handle:
        handle.write("[database]\nurl = %s\nconnect_timeout = %s\n%s" % (url, connect_timeout, extra))


# -- one test's database ------------------------------------------------------------------
@dataclass
class Setup:
    """One test's database, config file and process environment."""
    dialect: str
    url: str
    path: str  # config file
    env: Dict[str, str]
    mysql_database: Optional[str] = None
    events_folder: Optional[str] = None  # the events spool's folder, when not the config's

    @property
    def config(self):
        return load(self.path)

    def database(self, **options) -> Database:
        return Database(self.config.database, **options)

    def rewrite(self, extra: str = "", connect_timeout=2) -> None:
        """Rewrite the config file with the same database url plus extra INI text (and
        the spool of events_folder, when set)."""
        write_config(self.path, self.url, connect_timeout, extra + (events_ini(self.events_folder)
                                                                    if self.events_folder else ""))

    def connection(self):
        """A connection of the test's own, outside the package, to look at and seed the tables."""
        if self.dialect == "sqlite":
            return sqlite3.connect(self.config.database.path, isolation_level=None, timeout=10)
        return server_connection(self.mysql_database)

    def query(self, *statements):
        """Rows of each SELECT, read straight from the database (not through the code under
        test), plus the database clock's now: (rows of statement 1, ..., now)."""
        now = "CAST((julianday('now') - 2440587.5) * 86400 AS INTEGER)" if self.dialect == "sqlite" \
            else "UNIX_TIMESTAMP()"
        connection = self.connection()
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
    """A fresh database on the shared server, dropped when the test ends."""
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
        install_into(setup.config)
    return setup


def install_into(config, addressbook=False) -> List[str]:
    """install_schema on the config's database; the lines it reports."""
    database = Database(config.database)
    try:
        return install_schema(database, config, addressbook=addressbook)
    finally:
        database.close()


# -- the vipsticky command ------------------------------------------------------------------
def vipsticky(where, *args, timeout=CLI_TIMEOUT):
    """Run the installed `vipsticky` console script as an admin does. `where` gives the
    environment: a Setup (or anything with .env), an environment dict, or None (this one)."""
    env = where if isinstance(where, dict) or where is None else where.env
    return subprocess.run(script_command("vipsticky") + list(args), env=env, capture_output=True, text=True,
                          timeout=timeout)


def lines(text) -> List[str]:
    """The lines of text that are not blank."""
    return [line for line in text.splitlines() if line.strip()]


def one_line(text) -> str:
    found = text.splitlines()
    assert len(found) == 1, text
    return found[0]


def assert_one_error_line(result, what):
    """A refused command: exit != 0, one line on stderr starting with 'vipsticky:', no traceback."""
    assert result.returncode != 0, (what, result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, (what, result.stderr)
    line = result.stderr.strip()
    assert line, (what, "nothing on stderr")
    assert "\n" not in line and "\r" not in line, (what, result.stderr)
    assert line.startswith("vipsticky:"), (what, result.stderr)


# -- what a finished call must look like ---------------------------------------------------
def assert_clean(call):
    """What every call must look like, whatever it did: it finished, exit 0, nothing on
    stderr, only well-formed AGI commands, and never a HANGUP."""
    assert not call.timed_out, call
    assert call.exit_code == 0, call
    assert call.stderr == "", call
    assert call.malformed == [], call
    assert not any(command.upper().startswith("HANGUP") for command in call.commands), call
    return call


def assert_failed_open(call, script, limit=None, fail_open=None):
    """A clean call that failed: one WARNING 'vipsticky SCRIPT: ...; failing open' for the
    Asterisk log, the script's fail-open values and, with a limit, done within `limit` seconds."""
    assert_clean(call)
    assert len(call.warnings) == 1, call.warnings
    assert call.warnings[0].startswith("vipsticky %s: " % script), call.warnings
    assert call.warnings[0].endswith("; failing open"), call.warnings
    for name, value in (fail_open or FAIL_OPEN[script]).items():
        assert call.variables.get(name) == value, (name, call.variables)
    if limit is not None:
        assert call.elapsed < limit, "took %.2f s, limit %.2f s" % (call.elapsed, limit)
    return call


def check_vip_call(call, warnings=0):
    """What every vip_or_not call must look like: clean, exactly three SET VARIABLE
    commands (plus `warnings` WARNINGs for the Asterisk log) for QUEUE_PRIO, VIP and VIP_LABEL."""
    assert_clean(call)
    sets = [command for command in call.commands if command.upper().startswith("SET VARIABLE ")]
    assert len(sets) == 3, call.commands
    assert len(call.warnings) == warnings and call.verbose == [], (call.warnings, call.verbose)
    assert len(call.commands) == 3 + warnings, call.commands
    assert set(call.variables) == set(VIP_VARIABLES)
    return call


def vip_result(call):
    """(QUEUE_PRIO, VIP, VIP_LABEL) of a vip_or_not call."""
    return tuple(call.variables[name] for name in VIP_VARIABLES)


def vip_of(setup, args, callerid=""):
    """(QUEUE_PRIO, VIP, VIP_LABEL) of one vip_or_not call on setup, which must pass check_vip_call."""
    return vip_result(check_vip_call(setup.run("vip_or_not", args, callerid=callerid)))


def report(record_property, title, figures):
    """Print figures (pytest -s) and keep them in the junit XML."""
    print("\n== %s ==" % title)
    for name, value in figures.items():
        print("  %-40s %s" % (name, value))
        record_property(name, value)


def report_problems(problems: List[str], total: int, what="calls", shown=15) -> None:
    assert not problems, "%d of %d %s went wrong; the first ones:\n%s" % (
        len(problems), total, what, "\n".join(problems[:shown]))


# -- servers ----------------------------------------------------------------------------------
class AllIdle(dict):
    """Device states where every device is NOT_INUSE, whatever the agent."""

    def get(self, key, default=None):
        return "NOT_INUSE"


class BlackHole:
    """A TCP server that never says a word. accept=True: it accepts every connection
    and keeps it open; accept=False: it only listens (the kernel completes the
    handshakes its backlog allows, later SYNs are dropped; backlog 0 by default)."""

    def __init__(self, accept: bool = True, backlog: Optional[int] = None):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(backlog if backlog is not None else (64 if accept else 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = []
        self._stop = threading.Event()
        self._thread = None
        if accept:
            self.listener.settimeout(0.05)
            self._thread = threading.Thread(target=self._accept, daemon=True)
            self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted.append(connection)

    def close(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        for connection in self.accepted:
            connection.close()
        self.listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class FastAGIServer:
    """The real FastAGI server (make_server) on a free loopback port, served in a thread.
    `log` holds its log lines; `errors` what socketserver's handle_error saw (it would
    print a traceback)."""
    CLOSE_WAIT = 15

    def __init__(self, config, pool_size=2):
        self.log: List[str] = []
        self.errors: List[str] = []
        self.server = make_server(config, "127.0.0.1", 0, pool_size, self.log.append)
        self.server.handle_error = self._handle_error
        self.address = self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.closed = None

    def _handle_error(self, request, address):
        self.errors.append(traceback.format_exc())
        socketserver.BaseServer.handle_error(self.server, request, address)

    def call(self, script, args, asterisk=None, hangup=None, callerid="", timeout=20):
        """One call, as Asterisk's AGI(agi://host:port/script) makes it."""
        return Peer(asterisk, hangup=hangup).call_fastagi(self.address, script, list(args), callerid=callerid,
                                                          timeout=timeout)

    def close(self, check=True) -> float:
        """Stop serving; returns how long server_close took (it waits for calls in flight).
        check: fail when it still waits after CLOSE_WAIT seconds."""
        if self.closed is not None:
            return self.closed
        self.server.shutdown()
        started = time.monotonic()
        closer = threading.Thread(target=self.server.server_close, daemon=True)
        closer.start()
        closer.join(timeout=self.CLOSE_WAIT)
        stuck = closer.is_alive()
        self.closed = time.monotonic() - started
        self.server.pool.close()
        self.thread.join(10)
        if check:
            assert not stuck, "server_close still waits for a call after %d s" % self.CLOSE_WAIT
        return self.closed

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close(check=exc_type is None)
        return False


# -- a load of calls ---------------------------------------------------------------------------
class LoadRun:
    """A load of scripted calls (remember, lookup of what was acknowledged, vip_or_not of
    VIP_NUMBERS and of others): hands out jobs, classifies results, keeps the figures.
    Thread-safe. The caller appends its own records."""

    def __init__(self, rng):
        self.lock = threading.Lock()
        self.rng = rng
        self.sequence = itertools.count()
        self.acknowledged = {}  # key -> agent, for every remember that reported stored
        self.acknowledged_keys = []
        self.records = []  # what the caller appends, e.g. (kind, script, action, start, end, outcome, elapsed)
        self.problems = []
        self.counts = {"fastagi": 0, "process": 0}

    def job(self):
        with self.lock:
            index = next(self.sequence)
            slot = index % 10
            if slot < 5:
                number = "+7912%07d" % index
                return "remember", ["remember", number, "", "PJSIP/agent%05d" % index], None
            if slot < 8:
                if self.acknowledged_keys and slot != 7:
                    key = self.rng.choice(self.acknowledged_keys)
                    return "lookup", ["lookup", "+" + key], self.acknowledged[key]
                return "lookup", ["lookup", "+7913%07d" % index], None  # never bound
            if slot == 8:
                return "vip", [self.rng.choice(VIP_NUMBERS)], True
            return "vip", ["+7914%07d" % index], False

    def classify(self, kind, action, args, expected, call):
        """'normal' or 'failed-open'; anything else is a problem."""
        script = "vip_or_not" if action == "vip" else "sticky_route"
        where = "%s %s %s" % (kind, script, args)
        if call.timed_out or call.exit_code != 0 or call.stderr or call.malformed:
            return self.problem("%s: exit %s, timed out %s, stderr %r, malformed %r"
                                % (where, call.exit_code, call.timed_out, call.stderr[-300:], call.malformed))
        variables = call.variables
        if call.warnings:
            if len(call.warnings) != 1 or not call.warnings[0].endswith("; failing open") or \
                    any(variables.get(n) != v for n, v in FAIL_OPEN[script].items()):
                return self.problem("%s: bad fail-open %r %r" % (where, call.warnings, variables))
            return "failed-open"
        if action == "remember":
            if variables.get("STICKY_STATUS") != "stored":
                return self.problem("%s: remember said %r" % (where, variables))
            key = number_key(args[1], PLAN)
            with self.lock:
                self.acknowledged[key] = args[3]
                self.acknowledged_keys.append(key)
        elif action == "lookup":
            want = ("found", expected) if expected else ("none", "")
            got = (variables.get("STICKY_STATUS"), variables.get("STICKY_AGENT"))
            if got != want:
                return self.problem("%s: lookup gave %r, expected %r%s" % (
                    where, got, want, " (an acknowledged binding is missing)" if expected else ""))
        else:
            want = ("10", "1") if expected else ("5", "0")
            got = (variables.get("QUEUE_PRIO"), variables.get("VIP"))
            if got != want:
                return self.problem("%s: vip_or_not gave %r, expected %r" % (where, got, want))
        return "normal"

    def problem(self, text):
        with self.lock:
            self.problems.append(text)
        return "problem"

    def place_call(self, kind, fastagi_address=None, process_env=None):
        """The next job as one call, over FastAGI to fastagi_address ("fastagi") or spawned
        with process_env ("process"): (action, script, started, ended, outcome, call)."""
        action, args, expected = self.job()
        script = "vip_or_not" if action == "vip" else "sticky_route"
        peer = Peer(Asterisk(devices=AllIdle()))
        started = time.monotonic()
        if kind == "fastagi":
            call = peer.call_fastagi(fastagi_address, script, args, timeout=30)
        else:
            call = peer.run_script(script, args, timeout=30, process_env=process_env)
        ended = time.monotonic()
        return action, script, started, ended, self.classify(kind, action, args, expected, call), call


class Served:
    """`vipsticky serve` as systemd runs it, on a port the kernel picks unless options give
    another --listen; .log holds its stderr lines."""
    START_TIMEOUT = 20

    def __init__(self, setup, *options):
        self.process = subprocess.Popen(script_command("vipsticky") + ["serve", "--listen", "127.0.0.1:0"]
                                        + list(options),
                                        env=setup.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        self.log = []
        self._more = threading.Condition()  # notified with each line: wait_for sees it at once
        self._drained = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        first = self.wait_for("listening on", timeout=self.START_TIMEOUT)[0]
        match = re.search(r"listening on ([\d.]+):(\d+)", first)
        self.address = (match.group(1), int(match.group(2)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:  # the test failed before stop(): no process left behind
            self.process.kill()
            self.process.wait()
        return False

    def _drain(self):
        for line in self.process.stderr:
            with self._more:
                self.log.append(line.rstrip("\n"))
                self._more.notify_all()
        self._drained.set()
        with self._more:
            self._more.notify_all()

    def wait_for(self, pattern, count=1, timeout=30):
        """The log lines that match pattern, once there are count of them."""
        deadline = time.monotonic() + timeout
        with self._more:
            while True:
                found = [line for line in self.log if re.search(pattern, line)]
                if len(found) >= count:
                    return found
                assert time.monotonic() < deadline and not self._drained.is_set(), (pattern, count, self.log)
                self._more.wait(max(0.0, deadline - time.monotonic()))

    def workers(self):
        """The worker processes' pids (the supervisor's children)."""
        with open("/proc/%d/task/%d/children" % (self.process.pid, self.process.pid)) as handle:
            return [int(pid) for pid in handle.read().split()]

    def status(self, field) -> int:
        """A number from /proc/PID/status: Threads, VmHWM (kB), ..."""
        with open("/proc/%d/status" % self.process.pid) as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def call(self, *args, callerid=NUMBER):
        """sticky_route with args over FastAGI, every agent idle; checked clean."""
        return assert_clean(Peer(Asterisk(devices=AllIdle())).call_fastagi(self.address, "sticky_route", list(args),
                                                                           callerid=callerid))

    def stop(self, limit=10.0) -> float:
        """SIGTERM as systemd sends it; the seconds until it exited 0, its stderr clean
        and ending in "stopped"."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail("vipsticky serve still running %g s after SIGTERM: %r" % (limit, self.log))
        seconds = time.monotonic() - started
        self._drained.wait(5)
        assert code == 0, self.log
        assert_clean_log(self.log)
        assert self.log[-1] == "vipsticky serve: stopped", self.log
        return seconds


def assert_clean_log(lines):
    """A server's stderr: one line per event, each with the server's prefix, never a traceback."""
    assert lines, "nothing on stderr"
    for line in lines:
        assert line.startswith("vipsticky serve: "), lines
        assert "Traceback" not in line, lines


class CallInFlight:
    """A FastAGI sticky_route lookup that the server is in the middle of: its environment
    sent, its first command (.first) read and not answered yet."""

    def __init__(self, address, number=NUMBER):
        self.connection = socket.create_connection(address, timeout=20)
        self.reader, self.writer = self.connection.makefile("rb"), self.connection.makefile("wb")
        self.writer.write(("".join("%s: %s\n" % item for item in Peer.environment(
            "sticky_route", ["lookup"], number, network=True)) + "\n").encode())
        self.writer.flush()
        self.first = self.reader.readline().decode().rstrip("\n")

    def finish(self, asterisk) -> Call:
        """Answer every command as `asterisk` would, to the end of the call."""
        peer, call, line = Peer(asterisk), Call("sticky_route", ["lookup"]), self.first
        while line:
            self.writer.write((peer.reply(call, line) + "\n").encode())
            self.writer.flush()
            line = self.reader.readline().decode().rstrip("\n")
        self.connection.close()
        return call
