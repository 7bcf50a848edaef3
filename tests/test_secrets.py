"""The database password never appears in any output (reliability issue, item 5, the
password part; `vipsticky doctor` is tested elsewhere).

A distinctive password that needs percent-encoding in a URL is configured, and every
place a person or a log could see is searched for it (raw, percent-encoded, or any
fragment of it: "S3cret" is enough to fail):

- the per-call scripts: every AGI command sent to Asterisk, the WARNINGs, the
  channel variables, stderr, and the syslog message (captured inside the real script
  process by replacing the syslog module's functions; there is no syslog daemon to
  read from here). The syslog message is the WARNING's text minus its "vipsticky "
  prefix: call.answer builds the reason once for both;
- the CLI (lookup, install-schema, purge, vip list, bindings list): stdout and stderr;
- FastAGI: the commands and the log lines, in process and from `vipsticky serve`
  (its real log stream, stderr);
- DatabaseError: str, repr, the formatted traceback and the chained driver error;
- repr/str of Config and DatabaseSettings, safe_url, and ConfigError messages for
  broken URLs and broken files that hold the password.

Scenarios: authentication fails (wrong password against the shared MariaDB), the
port is closed, a black hole (accepts, never answers), and the right password (a
user with that password on a private MariaDB, so the success paths are seen too).
"""
import json
import os
import select
import signal
import subprocess
import sys
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from agi_scripts.asterisk_standin import Asterisk, Peer, script_command
from agi_scripts.config import Config, ConfigError, load, parse_database_url
from agi_scripts.database import Database, DatabaseError
from agi_scripts.schema import install_schema
from utils import (AGENT, NUMBER, ONE_CALL_EACH, SERVER_URL, AllIdle, BlackHole, FastAGIServer, assert_clean,
                   free_port, vipsticky, write_config)

PASSWORD = "Sup3r-S3cret!pw@#:/%"
ENCODED = quote(PASSWORD, safe="")  # Sup3r-S3cret%21pw%40%23%3A%2F%25
SECRET_FORMS = (PASSWORD, ENCODED, quote(PASSWORD), PASSWORD.replace("%", "%%"), "S3cret")
CONNECT_TIMEOUT = 1
SCRIPT_CASES = ONE_CALL_EACH
CLI_COMMANDS = [["install-schema"], ["lookup", NUMBER], ["purge"], ["vip", "list"], ["bindings", "list"]]
SCENARIOS = ["wrong-password", "port-closed", "black-hole", "right-password"]
FAILING = SCENARIOS[:3]

# The real script, started as Asterisk would, with syslog.openlog/syslog.syslog
# recording their arguments to a file instead of going to a (missing) syslog daemon.
SYSLOG_SHIM = r"""
import json, os, sys, syslog
def _record(*args):
    with open(os.environ["VIPSTICKY_TEST_SYSLOG"], "a", encoding="utf-8") as handle:
        handle.write(json.dumps(list(args)) + "\n")
syslog.openlog = lambda *args, **kwargs: _record("openlog", *args)
syslog.syslog = lambda *args: _record("syslog", *args)
from agi_scripts.%s import main
sys.exit(main())
"""


def assert_no_secret(where, *texts):
    for text in texts:
        if text is None:
            continue
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not isinstance(text, str):
            text = json.dumps(text, default=repr)
        lowered = text.lower()
        for form in SECRET_FORMS:
            assert form.lower() not in lowered, "%s shows the password (%r) in: %r" % (where, form, text[:500])


def call_texts(call):
    return [call.commands, call.verbose, call.warnings, call.variables, call.malformed, call.stderr]


# -- scenarios --------------------------------------------------------------------------
class Scenario:
    def __init__(self, name, url, tmp_path):
        self.name = name
        self.url = url
        self.path = str(tmp_path / "vipsticky.conf")
        write_config(self.path, url, CONNECT_TIMEOUT)
        self.syslog_path = str(tmp_path / "syslog.jsonl")
        self.env = dict(os.environ, VIPSTICKY_CONFIG=self.path, VIPSTICKY_TEST_SYSLOG=self.syslog_path)

    @property
    def config(self):
        return load(self.path)

    @property
    def failing(self):
        return self.name != "right-password"


@pytest.fixture(scope="module")
def secret_server(private_server):
    """The module's private MariaDB with a user whose password is PASSWORD."""
    private_server.execute("CREATE USER 'vs_secret'@'127.0.0.1' IDENTIFIED BY '%s'" % PASSWORD.replace("'", "''"),
                           "GRANT ALL ON *.* TO 'vs_secret'@'127.0.0.1'")
    return private_server


@pytest.fixture(params=SCENARIOS)
def scenario(request, tmp_path):
    hole = None
    if request.param == "wrong-password":
        shared = parse_database_url(SERVER_URL)
        url = "mysql://%s:%s@%s:%d/test" % (shared.user, ENCODED, shared.host, shared.port)
    elif request.param == "port-closed":
        url = "mysql://root:%s@127.0.0.1:%d/test" % (ENCODED, free_port())
    elif request.param == "black-hole":
        hole = BlackHole()
        url = "mysql://root:%s@127.0.0.1:%d/test" % (ENCODED, hole.port)
    else:
        server = request.getfixturevalue("secret_server")
        name = "vs_secret_%s" % uuid.uuid4().hex[:8]
        server.execute("CREATE DATABASE %s" % name)
        url = server.url(name, user="vs_secret", password=ENCODED)
    result = Scenario(request.param, url, tmp_path)
    if request.param == "right-password":
        database = Database(result.config.database)
        lines = install_schema(database, result.config)
        database.close()
        assert_no_secret("install_schema's report", lines)
    yield result
    if hole:
        hole.close()


# -- per-call scripts -----------------------------------------------------------------------
def read_syslog(scenario):
    if not os.path.exists(scenario.syslog_path):
        return []
    with open(scenario.syslog_path, encoding="utf-8") as handle:
        entries = [json.loads(line) for line in handle]
    os.remove(scenario.syslog_path)
    return entries


@pytest.mark.parametrize("script, args", SCRIPT_CASES, ids=["vip_or_not", "lookup", "remember", "delnum"])
def test_scripts_never_show_the_password(scenario, script, args):
    call = Peer(Asterisk(devices=AllIdle())).run_script(
        script, args, callerid=NUMBER, process_env=scenario.env, timeout=20,
        command=[sys.executable, "-c", SYSLOG_SHIM % script])
    syslog = read_syslog(scenario)
    assert_no_secret("%s %s" % (script, args), *call_texts(call), syslog)
    assert_clean(call)
    if not scenario.failing:
        assert call.warnings == [] and syslog == []
        return
    assert len(call.warnings) == 1, call.warnings
    assert "***" in call.warnings[0] or scenario.name == "black-hole", call.warnings
    # One syslog line, the same text as the WARNING (without the ident).
    messages = [entry for entry in syslog if entry[0] == "syslog"]
    assert len(messages) == 1, syslog
    assert call.warnings[0] == "vipsticky " + messages[0][2]
    assert [entry[1] for entry in syslog if entry[0] == "openlog"] == ["vipsticky"]


# -- CLI ---------------------------------------------------------------------------------------
def run_cli(scenario, args):
    """(exit status or None when it had to be killed, stdout, stderr)."""
    try:
        result = vipsticky(scenario, *args, timeout=CONNECT_TIMEOUT + 7)
        return result.returncode, result.stdout, result.stderr
    except subprocess.TimeoutExpired as expired:
        # A black hole keeps the CLI waiting (see test_faults.test_cli_gives_up_on_a_black_hole):
        # what it printed so far must be clean all the same.
        def text(value):
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")
        return None, text(expired.stdout), text(expired.stderr)


def test_cli_never_shows_the_password(scenario):
    if scenario.failing:
        with ThreadPoolExecutor(len(CLI_COMMANDS)) as pool:
            results = list(pool.map(lambda args: run_cli(scenario, args), CLI_COMMANDS))
    else:
        results = [run_cli(scenario, args) for args in CLI_COMMANDS]  # install-schema first
    for args, (status, stdout, stderr) in zip(CLI_COMMANDS, results):
        where = "vipsticky %s" % " ".join(args)
        assert_no_secret(where, stdout, stderr)
        if not scenario.failing:
            assert status == 0 and stderr == "", (where, stdout, stderr)
            if args == ["install-schema"]:
                assert ":***@127.0.0.1:" in stdout, stdout
            continue
        if status is None:
            assert scenario.name == "black-hole", (where, stdout, stderr)
            continue
        assert status == 1, (where, status, stdout, stderr)
        assert stdout == ""
        assert len(stderr.splitlines()) == 1 and stderr.startswith("vipsticky: cannot connect to mysql://root:***@"), \
            (where, stderr)


# -- FastAGI -------------------------------------------------------------------------------------
def test_fastagi_never_shows_the_password(scenario):
    with FastAGIServer(scenario.config) as server:
        calls = [server.call(script, args, asterisk=Asterisk(devices=AllIdle()), callerid=NUMBER)
                 for script, args in SCRIPT_CASES]
    log = server.log
    for call in calls:
        assert_no_secret("FastAGI %s %s" % (call.script, call.args), *call_texts(call))
    assert_no_secret("the FastAGI log", log)
    assert len(log) == (len(SCRIPT_CASES) if scenario.failing else 0), log
    for call, line in zip(calls, log):
        assert call.warnings == ["vipsticky " + line]


def test_vipsticky_serve_log_never_shows_the_password(scenario):
    """`vipsticky serve` logs to stderr (the journal under systemd): its real output."""
    port = free_port()
    process = subprocess.Popen(script_command("vipsticky") + ["serve", "--listen", "127.0.0.1:%d" % port],
                               env=scenario.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Wait for its first log line (a probing connection would itself be logged).
        ready, _, _ = select.select([process.stderr], [], [], 20)
        assert ready, "vipsticky serve said nothing within 20 s"
        first = process.stderr.readline()
        calls = [Peer(Asterisk(devices=AllIdle())).call_fastagi(("127.0.0.1", port), script, args,
                                                                callerid=NUMBER, timeout=20)
                 for script, args in SCRIPT_CASES]
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    assert_no_secret("vipsticky serve", stdout, first, stderr)
    for call in calls:
        assert_no_secret("vipsticky serve %s %s" % (call.script, call.args), *call_texts(call))
    lines = (first + stderr).splitlines()
    assert process.returncode == 0, lines
    assert lines[0].startswith("vipsticky serve: listening on 127.0.0.1:%d" % port), lines
    assert lines[-1] == "vipsticky serve: stopped", lines
    failures = [line for line in lines if line.endswith("; failing open")]
    assert len(failures) == (len(SCRIPT_CASES) if scenario.failing else 0), lines
    assert len(lines) == 2 + len(failures), lines


# -- DatabaseError, Config, ConfigError ---------------------------------------------------------
def error_texts(error, suppressed_too=True):
    """Everything an exception could show: str, repr, the formatted traceback, and the
    exceptions chained to it. suppressed_too: also the error it was raised from with
    `from None` (never printed in a traceback, but kept in __context__): for a
    DatabaseError that is PyMySQL's error, which must not hold the password either.
    A ConfigError's suppressed context is configparser's error, which quotes the file's
    offending line; it is reachable only by digging into __context__, so not checked."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(type(error), error, error.__traceback__))]
    chained = error
    while True:
        if chained.__cause__ is not None:
            chained = chained.__cause__
        elif chained.__context__ is not None and (suppressed_too or not chained.__suppress_context__):
            chained = chained.__context__
        else:
            break
        texts += [str(chained), repr(chained)]
    return texts


def test_database_error_never_shows_the_password(scenario):
    settings = scenario.config.database
    assert settings.password == PASSWORD  # the URL's percent-encoding was decoded
    database = Database(settings)
    try:
        if scenario.failing:
            with pytest.raises(DatabaseError) as raised:
                database.connect()
            assert "***" in str(raised.value)
            assert_no_secret("DatabaseError (%s)" % scenario.name, *error_texts(raised.value))
            with pytest.raises(DatabaseError) as raised:
                database.remember("79120000001", "", AGENT, 60)
            assert_no_secret("DatabaseError from remember (%s)" % scenario.name, *error_texts(raised.value))
            return
        with pytest.raises(DatabaseError) as raised:
            database.run("SELECT * FROM no_such_table")
        assert_no_secret("DatabaseError, missing table", *error_texts(raised.value))
        wrong_database = Database(parse_database_url(scenario.url.rsplit("/", 1)[0] + "/no_such_database",
                                                     connect_timeout=CONNECT_TIMEOUT))
        with pytest.raises(DatabaseError) as raised:
            wrong_database.connect()
        assert "***" in str(raised.value)
        assert_no_secret("DatabaseError, unknown database", *error_texts(raised.value))
    finally:
        database.close()


def test_config_never_shows_the_password():
    url = "mysql://root:%s@127.0.0.1:3306/test" % ENCODED
    settings = parse_database_url(url)
    assert settings.password == PASSWORD
    assert settings.safe_url == "mysql://root:***@127.0.0.1:3306/test"
    config = Config(database=settings)
    assert_no_secret("Config/DatabaseSettings", repr(settings), str(settings), repr(config), str(config),
                     "%s %r" % (config, config), "{0} {0!r}".format(settings), settings.safe_url)


BROKEN_CONFIGS = {
    "port out of range": "[database]\nurl = mysql://root:%s@127.0.0.1:99999/test\n" % ENCODED,
    "port not a number": "[database]\nurl = mysql://root:%s@127.0.0.1:33o6/test\n" % ENCODED,
    "no database": "[database]\nurl = mysql://root:%s@127.0.0.1:3306\n" % ENCODED,
    "two path parts": "[database]\nurl = mysql://root:%s@127.0.0.1:3306/a/b\n" % ENCODED,
    "unknown scheme": "[database]\nurl = postgres://root:%s@127.0.0.1/test\n" % ENCODED,
    "password not encoded": "[database]\nurl = mysql://root:%s@127.0.0.1/test\n" % PASSWORD,
    "no section header": "url = mysql://root:%s@127.0.0.1/test\n" % ENCODED,
    "url twice": "[database]\nurl = sqlite:///tmp/x\nurl = mysql://root:%s@127.0.0.1/test\n" % ENCODED,
}


@pytest.mark.parametrize("broken", sorted(BROKEN_CONFIGS))
def test_broken_config_never_shows_the_password(broken, tmp_path):
    """A config that holds the password but cannot be used: the ConfigError message,
    a call's WARNING and the CLI's error line name the problem, not the secret."""
    path = tmp_path / "vipsticky.conf"
    path.write_text(BROKEN_CONFIGS[broken])
    env = dict(os.environ, VIPSTICKY_CONFIG=str(path))
    try:
        config = load(str(path))
    except ConfigError as error:
        assert_no_secret("ConfigError (%s)" % broken, *error_texts(error, suppressed_too=False))
    else:  # parsed after all (e.g. an unencoded password that urlsplit accepts)
        assert_no_secret("Config (%s)" % broken, repr(config), str(config), config.database.safe_url)
    call = Peer().run_script("vip_or_not", [NUMBER], process_env=env, timeout=20)
    assert_no_secret("vip_or_not with a broken config (%s)" % broken, *call_texts(call))
    assert_clean(call)
    assert call.variables.get("QUEUE_PRIO") == "5"
    result = vipsticky(env, "lookup", NUMBER, timeout=CONNECT_TIMEOUT + 30)
    assert_no_secret("vipsticky lookup with a broken config (%s)" % broken, result.stdout, result.stderr)
