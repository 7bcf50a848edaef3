"""Nothing fails silently in the field (issue 11): warnings where the admin looks, a config
read as Asterisk's own files are, empty arguments that mean what omitted ones mean, and no
silence for the caller while the database is away.

Real subprocesses (the installed scripts, `vipsticky`), real MariaDB and SQLite. That the
WARNING lines reach the `messages` file of a real Asterisk is shown in tests/e2e/.
"""
import os
import socket
import subprocess
import threading
import time

import pytest

import addressbook_ddl as ddl

from utils import (AGENT, SERVER_URL, AllIdle, BlackHole, assert_clean, assert_failed_open, assert_one_error_line, free_port,
                   vip_result, vipsticky, write_config)
from agi_scripts.addressbook import plan_signature, script as addressbook_script
from agi_scripts.asterisk_standin import Asterisk, Peer
from agi_scripts.config import from_sections, parse_database_url
from agi_scripts.schema import schema_script

NUMBER = "79130751580"
CALLER = "+7 913 075-15-80"


def queue_support(*members):
    return Asterisk(devices=AllIdle(), queues={"support": {member: False for member in members}})


# -- where the admin looks ------------------------------------------------------------------
def test_remember_without_a_member_interface_names_setinterfacevar(setup):
    call = assert_clean(setup.run("sticky_route", ["remember", NUMBER, "support"], asterisk=queue_support(AGENT)))
    assert call.variables == {"STICKY_STATUS": "bad-agent"}
    assert len(call.warnings) == 1 and "setinterfacevar=yes" in call.warnings[0], call.warnings
    assert call.warnings[0].startswith("vipsticky sticky_route: ")


def test_lookup_in_a_queue_that_does_not_exist_says_so(setup):
    call = assert_clean(setup.run("sticky_route", ["lookup", NUMBER, "suport"], asterisk=queue_support(AGENT)))
    assert call.variables["STICKY_STATUS"] == "none"
    assert call.warnings == ["vipsticky sticky_route: queue suport does not exist in queues.conf: "
                             "check the dialplan's queue argument"]
    call = assert_clean(setup.run("sticky_route", ["lookup", NUMBER, "support"], asterisk=queue_support(AGENT)))
    assert call.warnings == []


def test_a_failure_is_one_warning_in_the_asterisk_log(tmp_path):
    path = tmp_path / "vipsticky.conf"
    write_config(path, "mysql://root@127.0.0.1:%d/test" % free_port(), connect_timeout=1)
    env = dict(os.environ, VIPSTICKY_CONFIG=str(path))
    call = Peer().run_script("vip_or_not", [NUMBER], process_env=env)
    assert_failed_open(call, "vip_or_not")
    assert call.verbose == []  # not a VERBOSE line: Asterisk's default logger.conf drops those from messages
    assert any(command.startswith('EXEC Log "WARNING,vipsticky vip_or_not: ') for command in call.commands)


# -- the config file, read as an Asterisk admin writes it -----------------------------------
def test_asterisk_arrows_are_read_as_equals(setup):
    setup.rewrite("[vip]\npriority => 30\nnormal_priority=>7\n")
    assert vipsticky(setup, "vip", "add", NUMBER).stdout.strip() == "%s is VIP with priority 30" % NUMBER
    assert vip_result(setup.run("vip_or_not", ["89130000000"])) == ("7", "0", "")


@pytest.mark.parametrize("text, problem", [
    ("[sticky]\ntll = 60\n", "[sticky] tll is not a setting: did you mean ttl?"),
    ("[sticky]\ndialtimeout = 5\n", "[sticky] dialtimeout is not a setting: did you mean dial_timeout?"),
    ("[queue support]\nttll = 5\n", "[queue support] ttll is not a setting: did you mean ttl?"),
    ("[stiky]\nttl = 5\n", "[stiky] is not a section of vipsticky.conf: did you mean sticky?"),
])
def test_an_unknown_name_is_an_error_for_the_cli_and_a_warning_in_a_call(setup, text, problem):
    setup.rewrite("[vip]\nnormal_priority = 7\n" + text)
    result = vipsticky(setup, "purge")
    assert_one_error_line(result, "unknown key")
    assert result.stderr.strip().endswith(problem), result.stderr
    call = assert_clean(setup.run("vip_or_not", ["89130000000"]))
    assert vip_result(call) == ("7", "0", "")  # the rest of the file is used
    assert call.warnings == ["vipsticky vip_or_not: config file %s: %s; the rest of it is used" % (setup.path, problem)]


@pytest.mark.parametrize("directive", ["#include extra.conf", "#tryinclude \"extra.conf\"", "#exec /bin/true"])
def test_include_is_refused_not_taken_for_a_comment(setup, directive):
    setup.rewrite(directive + "\n")
    result = vipsticky(setup, "purge")
    assert_one_error_line(result, directive)
    assert "#include and #exec are not supported" in result.stderr
    assert_failed_open(setup.run("vip_or_not", [NUMBER]), "vip_or_not")


# -- empty arguments mean omitted ones --------------------------------------------------------
def test_an_empty_number_is_the_caller_id_in_every_script(setup):
    database = setup.database()
    database.vip_add(NUMBER, 30, "Ivan")
    database.close()
    assert vip_result(setup.run("vip_or_not", [""], callerid=CALLER)) == ("30", "1", "Ivan")
    stored = assert_clean(setup.run("sticky_route", ["remember", "", "support", AGENT], callerid=CALLER))
    assert stored.variables == {"STICKY_STATUS": "stored"}
    found = assert_clean(setup.run("sticky_route", ["lookup", "", "support"], callerid=CALLER,
                                   asterisk=queue_support(AGENT)))
    assert (found.variables["STICKY_STATUS"], found.variables["STICKY_AGENT"]) == ("found", AGENT)
    deleted = assert_clean(setup.run("delnum", ["", ""], callerid=CALLER))
    assert deleted.variables["DELNUM_STATUS"] == "deleted"


def test_an_empty_queue_is_the_global_scope(setup):
    assert_clean(setup.run("sticky_route", ["remember", NUMBER, "", AGENT]))
    rows, _ = setup.query("SELECT queue FROM numbers_remember")
    assert [tuple(row) for row in rows] == [("",)]
    found = assert_clean(setup.run("sticky_route", ["lookup", NUMBER, ""], asterisk=queue_support(AGENT)))
    assert found.variables["STICKY_AGENT"] == AGENT


# -- an outage without silence -----------------------------------------------------------------
def outage_calls(tmp_path, breaker_seconds, count=4):
    """Seconds each of `count` back-to-back vip_or_not calls takes against a black hole
    (a server that accepts and never answers), connect_timeout = 1."""
    with BlackHole() as hole:
        path = tmp_path / "vipsticky.conf"
        write_config(path, "mysql://root@127.0.0.1:%d/test" % hole.port, connect_timeout=1,
                     extra="breaker_seconds = %d\n" % breaker_seconds)
        env = dict(os.environ, VIPSTICKY_CONFIG=str(path), XDG_RUNTIME_DIR=str(tmp_path))
        calls = [assert_failed_open(Peer().run_script("vip_or_not", [NUMBER], process_env=env), "vip_or_not")
                 for _ in range(count)]
    return [call.elapsed for call in calls], calls


def test_a_black_hole_is_not_waited_for_again(tmp_path, record_property):
    for name in ("off", "on"):
        (tmp_path / name).mkdir()
    without, _ = outage_calls(tmp_path / "off", breaker_seconds=0)
    with_breaker, calls = outage_calls(tmp_path / "on", breaker_seconds=30)
    record_property("black hole, s per call without breaker", without)
    record_property("black hole, s per call with breaker", with_breaker)
    print("\nblack-hole outage, vip_or_not back to back: without breaker %s s; with breaker %s s"
          % (" ".join("%.2f" % s for s in without), " ".join("%.2f" % s for s in with_breaker)))
    assert all(seconds >= 0.9 for seconds in without), without           # each waits connect_timeout
    assert with_breaker[0] >= 0.9 and all(seconds < 0.5 for seconds in with_breaker[1:]), with_breaker
    assert "not tried again" in calls[-1].warnings[0], calls[-1].warnings


class Forwarder:
    """A TCP port that, once opened, forwards to the shared MariaDB: the same host:port
    goes from down (refused) to up."""

    def __init__(self, port, target=("127.0.0.1", 3306)):
        self.port, self.target = port, target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.listener.settimeout(0.2)
        while not self.stop:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed
            server = socket.create_connection(self.target)
            for one, other in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(one, other), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.listener.close()


def test_the_first_success_closes_the_breaker(mariadb, tmp_path):
    server = parse_database_url(SERVER_URL)
    port = free_port()
    url = mariadb.url.replace("%s:%d" % (server.host, server.port), "127.0.0.1:%d" % port)
    write_config(mariadb.path, url, connect_timeout=1, extra="breaker_seconds = 2\n")
    mariadb.env["XDG_RUNTIME_DIR"] = str(tmp_path)
    assert_failed_open(mariadb.run("vip_or_not", [NUMBER]), "vip_or_not")  # refused: trips
    state = tmp_path / ("down-127.0.0.1-%d" % port)
    assert state.exists()
    forwarder = Forwarder(port, (server.host, server.port))
    try:
        held_off = assert_failed_open(mariadb.run("vip_or_not", [NUMBER]), "vip_or_not")
        assert "not tried again" in held_off.warnings[0]
        time.sleep(2.1)
        call = assert_clean(mariadb.run("vip_or_not", [NUMBER]))
        assert call.warnings == [] and vip_result(call) == ("5", "0", "")
        assert not state.exists()
        assert assert_clean(mariadb.run("vip_or_not", [NUMBER])).warnings == []
    finally:
        forwarder.close()


# -- the SQL scripts for a DBA -------------------------------------------------------------
def test_sql_folder_holds_the_core_schema_and_the_address_book_add_on_as_generated():
    """sql/ is what install-schema --sql prints for the default [numbers] plan; the add-on
    records its plan, so `vipsticky doctor` can tell a stale one."""
    config = from_sections({})
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sql")
    expected = {"mysql.sql": schema_script("mysql"), "sqlite.sql": schema_script("sqlite"),
                "mysql-addressbook.sql": addressbook_script(config)}
    assert sorted(os.listdir(folder)) == sorted(expected)
    for name, text in expected.items():
        with open(os.path.join(folder, name)) as handle:
            assert handle.read() == text, "sql/%s is stale: regenerate it with vipsticky install-schema --sql" % name
    assert "'number_plan', '%s'" % plan_signature(config.numbers) in expected["mysql-addressbook.sql"]
    assert "vipsticky_number_key" not in expected["mysql.sql"]


def test_the_dba_route_records_the_plan(make_setup):
    """install-schema --sql --addressbook run through the mysql client leaves a database
    that `vip sync` (and the doctor) see as made for this plan."""
    setup = make_setup("mariadb", "[vip]\nsource = addressbook\n", install=False)
    connection = setup.connection()
    with connection.cursor() as cursor:
        for sql in ddl.ddl("current", ""):
            cursor.execute(sql)
    connection.close()
    printed = vipsticky(setup, "install-schema", "--sql", "--addressbook")
    assert printed.returncode == 0, printed.stderr
    server = setup.config.database
    applied = subprocess.run(["mariadb", "-h", server.host, "-P", str(server.port), "-u", server.user, server.database],
                             input=printed.stdout, capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, MYSQL_PWD=server.password or ""))
    assert applied.returncode == 0, applied.stderr
    synced = vipsticky(setup, "vip", "sync")
    assert synced.returncode == 0 and synced.stdout.startswith("0 address-book number keys indexed"), synced
    assert "installed for the number plan" not in synced.stdout  # the plan was recorded: nothing to remake
