"""Sticky agent (issue 3): sticky_route lookup/remember, delnum, the bindings table,
the upgrade of the original setup's table, purge, concurrency and the CLI.

Every script runs as Asterisk runs it (a subprocess spoken to over AGI by the peer),
on real SQLite files and a real MariaDB database (one fresh database per test).
Times are compared with the database clock (Database.now()), never the test's.
"""
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from agi_scripts.asterisk_standin import Asterisk, Peer
from utils import ORIGINAL_DDL, AllIdle, assert_clean, vipsticky

NUMBER = "89130751580"
KEY = "79130751580"
OTHER = "+380441234567"
OTHER_KEY = "380441234567"
BUSY_STATES = ("UNAVAILABLE", "INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD", "INVALID")
BINDING_FIELDS = {"key", "queue", "agent", "seconds_left"}
LOOKUP_BINDING_FIELDS = {"agent", "queue", "seconds_left"}
# -- helpers ---------------------------------------------------------------------------
def sql(setup, statement, params=(), many=False):
    """Run one statement on the test's database; returns the fetched rows as tuples."""
    if setup.dialect == "sqlite":
        statement = statement.replace("%s", "?")
    connection = setup.connection()
    try:
        cursor = connection.cursor()
        if many and setup.dialect == "sqlite":
            cursor.execute("BEGIN")  # one transaction, not one fsync per row
            cursor.executemany(statement, params)
            cursor.execute("COMMIT")
        elif many:
            cursor.executemany(statement, params)
        else:
            cursor.execute(statement, params)
        found = cursor.fetchall() if cursor.description else []
        cursor.close()
        return [tuple(row) for row in found]
    finally:
        connection.close()


def db_now(setup):
    database = setup.database()
    try:
        return database.now()
    finally:
        database.close()


def bindings_rows(setup):
    """(number, queue, agent, last_contact, expires_at) of every row, expired ones too."""
    return [(n, q, a, int(lc), int(ex)) for n, q, a, lc, ex in
            sql(setup, "SELECT number, queue, agent, last_contact, expires_at FROM numbers_remember "
                       "ORDER BY number, queue")]


def insert_binding(setup, key, queue, agent, last_contact, expires_at):
    sql(setup, "INSERT INTO numbers_remember (number, queue, agent, last_contact, expires_at) "
               "VALUES (%s, %s, %s, %s, %s)", (key, queue, agent, last_contact, expires_at))


def tables(setup):
    if setup.dialect == "sqlite":
        return sorted(row[0] for row in sql(setup, "SELECT name FROM sqlite_master WHERE type = 'table' "
                                                   "AND name NOT LIKE 'sqlite_%'"))
    return sorted(row[0] for row in sql(setup, "SELECT table_name FROM information_schema.tables "
                                               "WHERE table_schema = DATABASE()"))


def columns(setup, table):
    if setup.dialect == "sqlite":
        return [row[1:] for row in sql(setup, "PRAGMA table_info(%s)" % table)]
    return sql(setup, "SELECT column_name, column_type, is_nullable, column_key FROM information_schema.columns "
                      "WHERE table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position", (table,))


def cli_json(setup, *args):
    done = vipsticky(setup, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def available(*agents, queue=None, paused=False, state="NOT_INUSE"):
    """An Asterisk where the agents' devices are idle and, with a queue, they are members."""
    return Asterisk(devices={agent: state for agent in agents},
                    queues={queue: {agent: paused for agent in agents}} if queue else {})


def remember(setup, number=NUMBER, queue="", agent="PJSIP/alena", asterisk=None):
    return assert_clean(setup.run("sticky_route", ["remember", number, queue, agent], asterisk=asterisk))


def bind(setup, number=NUMBER, queue="", agent="PJSIP/alena"):
    call = remember(setup, number, queue, agent)
    assert call.variables == {"STICKY_STATUS": "stored"}, call
    return call


def seed(setup, key=KEY, queue="", agent="PJSIP/alena", ttl=86400):
    """A live binding written straight into the table (for tests about what reads it)."""
    now = db_now(setup)
    insert_binding(setup, key, queue, agent, now, now + ttl)


def lookup(setup, number=NUMBER, queue=None, asterisk=None):
    args = ["lookup", number] + ([] if queue is None else [queue])
    return assert_clean(setup.run("sticky_route", args, asterisk=asterisk or Asterisk()))


def set_variables(call):
    return [command for command in call.commands if command.upper().startswith("SET VARIABLE")]


# -- lookup: every STICKY_STATUS ---------------------------------------------------------
@pytest.mark.parametrize("agent", ["PJSIP/alena", "SIP/alena", "Local/alena@agents/n"])
def test_lookup_found_when_idle_member_not_paused(setup, agent):
    bind(setup, queue="q1", agent=agent)
    call = lookup(setup, queue="q1", asterisk=available(agent, queue="q1"))
    assert call.variables == {"STICKY_DIAL_TIMEOUT": "20", "STICKY_AGENT": agent, "STICKY_STATUS": "found"}


def test_lookup_found_with_unknown_device_state(setup):
    # UNKNOWN is not one of the states the issue lists as unavailable
    seed(setup, queue="q1")
    call = lookup(setup, queue="q1", asterisk=available("PJSIP/alena", queue="q1", state="UNKNOWN"))
    assert call.variables["STICKY_STATUS"] == "found"
    assert call.variables["STICKY_AGENT"] == "PJSIP/alena"


def test_lookup_uses_caller_id_without_number_argument(setup):
    bind(setup, number="+7 913 075 15 80")
    call = assert_clean(setup.run("sticky_route", ["lookup"], asterisk=available("PJSIP/alena"), callerid=NUMBER))
    assert call.variables["STICKY_STATUS"] == "found"
    assert call.variables["STICKY_AGENT"] == "PJSIP/alena"


def test_lookup_none(setup):
    bind(setup, number=OTHER, queue="q1")  # someone else's binding
    bind(setup, queue="q2")  # this caller, another queue
    call = lookup(setup, queue="q1", asterisk=available("PJSIP/alena", queue="q1"))
    assert call.variables == {"STICKY_DIAL_TIMEOUT": "20", "STICKY_AGENT": "", "STICKY_STATUS": "none"}
    # the global scope is a scope of its own too
    call = lookup(setup, asterisk=available("PJSIP/alena"))
    assert call.variables["STICKY_STATUS"] == "none"


def test_lookup_expired_before_purge(setup):
    setup.rewrite("[queue q1]\nttl = 1\n")
    bind(setup, queue="q1")
    bind(setup, queue="q2")  # another queue: default ttl, still live
    time.sleep(2.1)
    call = lookup(setup, queue="q1", asterisk=available("PJSIP/alena", queue="q1"))
    assert call.variables == {"STICKY_DIAL_TIMEOUT": "20", "STICKY_AGENT": "", "STICKY_STATUS": "expired"}
    # purge has not run: the row is still there, it is only not used
    assert [(n, q, a) for n, q, a, _, _ in bindings_rows(setup)] == [(KEY, "q1", "PJSIP/alena"),
                                                                    (KEY, "q2", "PJSIP/alena")]
    call = lookup(setup, queue="q2", asterisk=available("PJSIP/alena", queue="q2"))
    assert call.variables["STICKY_STATUS"] == "found"


def test_a_global_binding_serves_queues_without_a_live_binding_of_their_own(setup):
    """The rule for bindings upgraded from the original setup (global scope) and for
    remember without a queue: the queue's own live binding first, else the global one."""
    bind(setup, queue="q1", agent="PJSIP/alena")
    bind(setup, queue="", agent="PJSIP/boris")
    asterisk = Asterisk(devices=AllIdle(), queues={"q1": {"PJSIP/alena": False, "PJSIP/boris": False},
                                                   "q2": {"PJSIP/alena": False, "PJSIP/boris": False}})
    assert lookup(setup, queue="q1", asterisk=asterisk).variables["STICKY_AGENT"] == "PJSIP/alena"
    assert lookup(setup, queue="q2", asterisk=asterisk).variables["STICKY_AGENT"] == "PJSIP/boris"
    setup.query("DELETE FROM numbers_remember WHERE queue = 'q1'")
    seed(setup, queue="q1", agent="PJSIP/alena", ttl=-1)  # q1's own binding has expired: the global one serves q1
    assert lookup(setup, queue="q1", asterisk=asterisk).variables["STICKY_AGENT"] == "PJSIP/boris"


@pytest.mark.parametrize("state", BUSY_STATES)
def test_lookup_unavailable_device_state(setup, state):
    seed(setup, queue="q1")
    call = lookup(setup, queue="q1", asterisk=available("PJSIP/alena", queue="q1", state=state))
    assert call.variables == {"STICKY_DIAL_TIMEOUT": "20", "STICKY_AGENT": "", "STICKY_STATUS": "unavailable"}


def test_lookup_unavailable_device_unknown_to_asterisk(setup):
    seed(setup, queue="q1")
    asterisk = Asterisk(devices={}, queues={"q1": {"PJSIP/alena": False}})  # DEVICE_STATE -> INVALID
    assert lookup(setup, queue="q1", asterisk=asterisk).variables["STICKY_STATUS"] == "unavailable"


def test_lookup_unavailable_when_not_a_member_of_the_queue(setup):
    seed(setup, queue="q1")
    asterisk = Asterisk(devices={"PJSIP/alena": "NOT_INUSE"},
                        queues={"q1": {"PJSIP/boris": False}, "q2": {"PJSIP/alena": False}})
    call = lookup(setup, queue="q1", asterisk=asterisk)
    assert call.variables["STICKY_STATUS"] == "unavailable"
    assert call.variables["STICKY_AGENT"] == ""


def test_lookup_unavailable_when_member_with_similar_name_only(setup):
    # membership is the exact interface, not a substring of the member list
    seed(setup, queue="q1", agent="PJSIP/alen")
    asterisk = Asterisk(devices={"PJSIP/alen": "NOT_INUSE"}, queues={"q1": {"PJSIP/alena": False}})
    assert lookup(setup, queue="q1", asterisk=asterisk).variables["STICKY_STATUS"] == "unavailable"


def test_lookup_unavailable_when_paused(setup):
    seed(setup, queue="q1")
    call = lookup(setup, queue="q1", asterisk=available("PJSIP/alena", queue="q1", paused=True))
    assert call.variables["STICKY_STATUS"] == "unavailable"
    assert call.variables["STICKY_AGENT"] == ""


def test_lookup_without_queue_checks_only_device_state(setup):
    seed(setup)
    # alena is in no queue at all, and paused in one: neither matters in the global scope
    asterisk = Asterisk(devices={"PJSIP/alena": "NOT_INUSE"}, queues={"q1": {"PJSIP/alena": True}})
    call = lookup(setup, asterisk=asterisk)
    assert call.variables == {"STICKY_DIAL_TIMEOUT": "20", "STICKY_AGENT": "PJSIP/alena", "STICKY_STATUS": "found"}
    assert not any("QUEUE_MEMBER" in command for command in call.commands), call.commands
    assert any("DEVICE_STATE(PJSIP/alena)" in command for command in call.commands), call.commands
    busy = Asterisk(devices={"PJSIP/alena": "INUSE"})
    assert lookup(setup, asterisk=busy).variables["STICKY_STATUS"] == "unavailable"


@pytest.mark.parametrize("number", ["anonymous", "", "garbage", "9130751580' OR '1'='1"])
def test_lookup_no_number(setup, number):
    seed(setup)
    call = lookup(setup, number=number, queue="q1", asterisk=available("PJSIP/alena", queue="q1"))
    assert call.variables == {"STICKY_DIAL_TIMEOUT": "20", "STICKY_AGENT": "", "STICKY_STATUS": "no-number"}


@pytest.mark.parametrize("args", [["frobnicate", NUMBER], [], ["lookup", NUMBER, "a,b"],
                                  ["lookup", NUMBER, "${EVIL}"]])
def test_lookup_error_fails_open(setup, args):
    seed(setup)
    call = assert_clean(setup.run("sticky_route", args, asterisk=available("PJSIP/alena")))
    assert call.variables.get("STICKY_STATUS") == "error", call
    assert call.variables.get("STICKY_AGENT") == "", call
    assert len(call.warnings) == 1, call


def test_remember_bad_queue_is_error_and_writes_nothing(setup):
    call = remember(setup, queue="a,b")
    assert call.variables["STICKY_STATUS"] == "error"
    assert bindings_rows(setup) == []


def test_lookup_error_when_database_is_missing(tmp_path):
    path = tmp_path / "broken.conf"
    path.write_text("[database]\nurl = sqlite:///%s\nconnect_timeout = 1\n" % (tmp_path / "missing" / "x.sqlite3"))
    env = dict(os.environ, VIPSTICKY_CONFIG=str(path))
    call = assert_clean(Peer(available("PJSIP/alena")).run_script("sticky_route", ["lookup", NUMBER], process_env=env))
    assert call.variables.get("STICKY_STATUS") == "error"
    assert call.variables.get("STICKY_AGENT") == ""
    assert not (tmp_path / "missing").exists()  # a call never creates a database


def test_dial_timeout_from_config_and_per_queue(setup):
    setup.rewrite("[sticky]\ndial_timeout = 15\n[queue vip]\ndial_timeout = 7\n")
    seed(setup, queue="vip")
    call = lookup(setup, queue="vip", asterisk=available("PJSIP/alena", queue="vip"))
    assert call.variables == {"STICKY_DIAL_TIMEOUT": "7", "STICKY_AGENT": "PJSIP/alena", "STICKY_STATUS": "found"}
    assert lookup(setup, queue="q1").variables["STICKY_DIAL_TIMEOUT"] == "15"
    assert lookup(setup).variables["STICKY_DIAL_TIMEOUT"] == "15"
    # the timeout is set whatever the status
    assert lookup(setup, number="anonymous", queue="vip").variables["STICKY_DIAL_TIMEOUT"] == "7"


# -- remember ------------------------------------------------------------------------------
@pytest.mark.parametrize("agent", ["PJSIP/boris", "SIP/alena", "Local/alena@agents/n", "IAX2/trunk-123"])
def test_remember_stores_agent_from_argument_as_given(setup, agent):
    call = remember(setup, queue="q1", agent=agent)
    assert call.variables == {"STICKY_STATUS": "stored"}
    assert len(set_variables(call)) == 1 and len(call.commands) == 1, call.commands
    assert [(n, q, a) for n, q, a, _, _ in bindings_rows(setup)] == [(KEY, "q1", agent)]


@pytest.mark.parametrize("agent", ["PJSIP/alena", "Local/alena@agents/n"])
@pytest.mark.parametrize("fourth", [None, ""])
def test_remember_defaults_to_memberinterface(setup, agent, fourth):
    args = ["remember", NUMBER, "q1"] + ([] if fourth is None else [fourth])
    call = assert_clean(setup.run("sticky_route", args, asterisk=Asterisk(variables={"MEMBERINTERFACE": agent})))
    assert call.variables == {"STICKY_STATUS": "stored"}
    assert len(set_variables(call)) == 1, call.commands
    assert [c for c in call.commands if c.upper().startswith("GET VARIABLE")] == ['GET VARIABLE "MEMBERINTERFACE"']
    assert len(call.commands) == 2, call.commands
    assert [(n, q, a) for n, q, a, _, _ in bindings_rows(setup)] == [(KEY, "q1", agent)]


def test_remember_argument_wins_over_memberinterface(setup):
    call = assert_clean(setup.run("sticky_route", ["remember", NUMBER, "q1", "PJSIP/boris"],
                           asterisk=Asterisk(variables={"MEMBERINTERFACE": "PJSIP/alena"})))
    assert call.variables == {"STICKY_STATUS": "stored"}
    assert [(n, a) for n, _, a, _, _ in bindings_rows(setup)] == [(KEY, "PJSIP/boris")]


def test_remember_without_queue_is_global_scope(setup):
    call = assert_clean(setup.run("sticky_route", ["remember", NUMBER],
                           asterisk=Asterisk(variables={"MEMBERINTERFACE": "PJSIP/alena"})))
    assert call.variables == {"STICKY_STATUS": "stored"}
    assert [(n, q, a) for n, q, a, _, _ in bindings_rows(setup)] == [(KEY, "", "PJSIP/alena")]


@pytest.mark.parametrize("agent", ["PJSIP/a&PJSIP/b", "PJSIP/a,b", "PJSIP/a b", "alena", "", '"PJSIP/alena"',
                                   "PJSIP/'a'", "PJSIP/a|b"])
def test_remember_bad_agent_writes_nothing(setup, agent):
    call = remember(setup, queue="q1", agent=agent)
    assert call.variables == {"STICKY_STATUS": "bad-agent"}
    assert bindings_rows(setup) == []


@pytest.mark.parametrize("member", ["PJSIP/a&PJSIP/b", "alena", None])
def test_remember_bad_memberinterface_writes_nothing(setup, member):
    variables = {} if member is None else {"MEMBERINTERFACE": member}
    call = assert_clean(setup.run("sticky_route", ["remember", NUMBER, "q1"], asterisk=Asterisk(variables=variables)))
    assert call.variables == {"STICKY_STATUS": "bad-agent"}
    assert bindings_rows(setup) == []


@pytest.mark.parametrize("number", ["anonymous", "", "garbage", "201"])
def test_remember_no_number(setup, number):
    call = remember(setup, number=number, queue="q1")
    assert call.variables == {"STICKY_STATUS": "no-number"}
    assert len(call.commands) == 1
    assert bindings_rows(setup) == []


def test_anonymous_callers_are_never_bound(setup):
    calls = []  # (arguments after "remember", caller ID)
    for index, number in enumerate(["anonymous", "unknown", "", "201"] * 5):
        if index % 3 == 0:  # no NUMBER argument: the caller ID is used, agent from MEMBERINTERFACE
            calls.append(([], number))
        else:
            # an empty NUMBER is the caller ID: withheld here too
            calls.append(([number, ("", "q1")[index % 2], "PJSIP/agent%d" % index], "anonymous"))
    assert len(calls) == 20

    def one(item):
        args, callerid = item
        return assert_clean(setup.run("sticky_route", ["remember"] + args, callerid=callerid,
                               asterisk=Asterisk(variables={"MEMBERINTERFACE": "PJSIP/alena"})))
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(one, calls))
    assert [call.variables.get("STICKY_STATUS") for call in results] == ["no-number"] * 20
    assert sql(setup, "SELECT COUNT(*) FROM numbers_remember")[0][0] == 0


# -- table, sliding TTL, per-queue ttl and scope ---------------------------------------------
def test_one_row_per_number_key_and_queue(setup):
    bind(setup, number="8 913 075 15 80", queue="q1", agent="PJSIP/alena")
    bind(setup, number="+79130751580", queue="q1", agent="PJSIP/boris")
    bind(setup, number="9130751580", queue="q1", agent="Local/carol@agents/n")
    rows = bindings_rows(setup)
    assert [(n, q, a) for n, q, a, _, _ in rows] == [(KEY, "q1", "Local/carol@agents/n")]
    call = lookup(setup, number="+7 (913) 075-15-80", queue="q1",
                  asterisk=available("Local/carol@agents/n", queue="q1"))
    assert call.variables["STICKY_AGENT"] == "Local/carol@agents/n"


def test_sliding_ttl_remember_again_moves_expiry_forward(setup):
    before = db_now(setup)
    bind(setup, queue="q1")
    [(_, _, _, last_contact, expires_at)] = bindings_rows(setup)
    assert before <= last_contact <= db_now(setup)
    assert expires_at - last_contact == 86400
    # make the binding old: last contact long ago, little time left
    sql(setup, "UPDATE numbers_remember SET last_contact = %s, expires_at = %s", (before - 80000, before + 50))
    now = db_now(setup)
    bind(setup, queue="q1", agent="PJSIP/boris")  # e.g. the refresh after an answered direct Dial
    [(number, queue, agent, last_contact, expires_at)] = bindings_rows(setup)
    assert (number, queue, agent) == (KEY, "q1", "PJSIP/boris")
    assert now <= last_contact <= db_now(setup)
    assert expires_at == last_contact + 86400
    assert expires_at > before + 50


def test_an_expired_binding_is_revived_by_remember(setup):
    now = db_now(setup)
    insert_binding(setup, KEY, "q1", "PJSIP/alena", now - 90000, now - 3600)
    assert lookup(setup, queue="q1", asterisk=available("PJSIP/alena", queue="q1")).variables["STICKY_STATUS"] \
        == "expired"
    bind(setup, queue="q1")
    assert lookup(setup, queue="q1", asterisk=available("PJSIP/alena", queue="q1")).variables["STICKY_STATUS"] \
        == "found"
    assert len(bindings_rows(setup)) == 1


def test_ttl_per_queue_and_global(setup):
    setup.rewrite("[sticky]\nttl = 500\n[queue q1]\nttl = 100\n[queue q3]\ndial_timeout = 9\n")
    for queue in ("q1", "q2", "q3", ""):
        bind(setup, queue=queue)
    spans = {queue: expires_at - last_contact for _, queue, _, last_contact, expires_at in bindings_rows(setup)}
    # q3 overrides only dial_timeout: it inherits [sticky] ttl
    assert spans == {"q1": 100, "q2": 500, "q3": 500, "": 500}


def test_default_ttl_is_86400(setup):
    bind(setup)
    [(_, _, _, last_contact, expires_at)] = bindings_rows(setup)
    assert expires_at - last_contact == 86400


def test_per_queue_scope(setup):
    bind(setup, queue="q1", agent="PJSIP/alena")
    bind(setup, queue="q2", agent="PJSIP/boris")
    asterisk = Asterisk(devices={"PJSIP/alena": "NOT_INUSE", "PJSIP/boris": "NOT_INUSE", "PJSIP/carol": "NOT_INUSE"},
                        queues={"q1": {"PJSIP/alena": False, "PJSIP/boris": False},
                                "q2": {"PJSIP/alena": False, "PJSIP/boris": False}})
    assert lookup(setup, queue="q1", asterisk=asterisk).variables["STICKY_AGENT"] == "PJSIP/alena"
    assert lookup(setup, queue="q2", asterisk=asterisk).variables["STICKY_AGENT"] == "PJSIP/boris"
    assert lookup(setup, queue="q3", asterisk=asterisk).variables["STICKY_STATUS"] == "none"
    assert lookup(setup, asterisk=asterisk).variables["STICKY_STATUS"] == "none"
    bind(setup, queue="", agent="PJSIP/carol")
    global_call = lookup(setup, asterisk=asterisk)
    assert global_call.variables["STICKY_AGENT"] == "PJSIP/carol"
    # binding in the global scope did not touch the queues' bindings
    assert lookup(setup, queue="q1", asterisk=asterisk).variables["STICKY_AGENT"] == "PJSIP/alena"
    assert lookup(setup, queue="q2", asterisk=asterisk).variables["STICKY_AGENT"] == "PJSIP/boris"
    assert len(bindings_rows(setup)) == 3


# -- delnum ----------------------------------------------------------------------------------------
def seed_three_scopes(setup):
    seed(setup, queue="q1", agent="PJSIP/alena")
    seed(setup, queue="q2", agent="PJSIP/boris")
    seed(setup, queue="", agent="PJSIP/carol")
    seed(setup, key=OTHER_KEY, queue="q1", agent="PJSIP/alena")


def scopes(setup, key=KEY):
    return sorted(q for n, q, _, _, _ in bindings_rows(setup) if n == key)


def test_delnum_with_queue_deletes_that_scope_only(setup):
    seed_three_scopes(setup)
    call = assert_clean(setup.run("delnum", [NUMBER, "q1"], asterisk=Asterisk()))
    assert call.variables == {"DELNUM_STATUS": "deleted"}
    assert scopes(setup) == ["", "q2"]
    assert scopes(setup, OTHER_KEY) == ["q1"]
    call = assert_clean(setup.run("delnum", [NUMBER, "q1"], asterisk=Asterisk()))
    assert call.variables == {"DELNUM_STATUS": "none"}
    assert scopes(setup) == ["", "q2"]


@pytest.mark.parametrize("args", [[NUMBER], [NUMBER, ""], []])
def test_delnum_without_queue_deletes_every_scope(setup, args):
    seed_three_scopes(setup)
    call = assert_clean(setup.run("delnum", args, asterisk=Asterisk(), callerid="+7 913 075 15 80"))
    assert call.variables == {"DELNUM_STATUS": "deleted"}
    assert scopes(setup) == []
    assert scopes(setup, OTHER_KEY) == ["q1"]
    assert lookup(setup, asterisk=available("PJSIP/carol")).variables["STICKY_STATUS"] == "none"


def test_delnum_none_and_no_number(setup):
    seed(setup, key=OTHER_KEY)
    call = assert_clean(setup.run("delnum", [NUMBER], asterisk=Asterisk()))
    assert call.variables == {"DELNUM_STATUS": "none"}
    for number in ("anonymous", "", "201", "garbage"):
        call = assert_clean(setup.run("delnum", [number], asterisk=Asterisk()))
        assert call.variables == {"DELNUM_STATUS": "no-number"}, number
    assert scopes(setup, OTHER_KEY) == [""]


def test_delnum_bad_queue_is_error(setup):
    seed(setup, queue="q1")
    call = assert_clean(setup.run("delnum", [NUMBER, "a,b"], asterisk=Asterisk()))
    assert call.variables == {"DELNUM_STATUS": "error"}
    assert scopes(setup) == ["q1"]


def test_delnum_plays_beep_after_the_delete(setup):
    seed(setup, queue="q1")
    call = assert_clean(setup.run("delnum", [NUMBER, "q1"], asterisk=Asterisk()))
    assert call.played == ["beep"]
    status = [i for i, c in enumerate(call.commands) if c.upper().startswith("SET VARIABLE") and "DELNUM_STATUS" in c]
    stream = [i for i, c in enumerate(call.commands) if c.upper().startswith("STREAM FILE")]
    assert len(status) == 1 and len(stream) == 1, call.commands
    assert status[0] < stream[0]


def test_delnum_with_missing_sound_still_unbinds_and_never_hangs_up(setup):
    seed(setup, queue="q1")
    seed(setup, queue="q2")
    call = assert_clean(setup.run("delnum", [NUMBER], asterisk=Asterisk(sounds=set())))
    assert call.variables.get("DELNUM_STATUS") == "deleted"
    assert call.played == []
    assert any(c.upper().startswith("STREAM FILE") for c in call.commands)  # it did try
    assert not any("HANGUP" in c.upper() for c in call.commands), call.commands
    assert bindings_rows(setup) == []


def test_delnum_custom_sound(setup):
    setup.rewrite("[sticky]\nunbind_sound = custom/ok\n")
    seed(setup)
    call = assert_clean(setup.run("delnum", [NUMBER], asterisk=Asterisk(sounds={"beep", "custom/ok"})))
    assert call.variables == {"DELNUM_STATUS": "deleted"}
    assert call.played == ["custom/ok"]
    assert bindings_rows(setup) == []


@pytest.mark.parametrize("way", ["sighup", "line", "eof"])
def test_delnum_caller_hangs_up_binding_still_deleted(setup, way):
    # the caller pressed * and hung up at once: the delete comes first, the script exits cleanly
    seed(setup, queue="q1")
    call = assert_clean(setup.run("delnum", [NUMBER], asterisk=Asterisk(), hangup=(0, way)))
    assert not any("HANGUP" in c.upper() for c in call.commands), call.commands
    assert bindings_rows(setup) == []


@pytest.mark.parametrize("way", ["sighup", "eof"])
def test_remember_hangup_at_first_command_exits_cleanly(setup, way):
    assert_clean(setup.run("sticky_route", ["remember", NUMBER, "q1", "PJSIP/alena"], asterisk=Asterisk(),
                           hangup=(0, way)))
    assert [(n, q, a) for n, q, a, _, _ in bindings_rows(setup)] == [(KEY, "q1", "PJSIP/alena")]


# -- purge ------------------------------------------------------------------------------------------
def test_purge_deletes_only_expired(setup):
    now = db_now(setup)
    insert_binding(setup, "79130000001", "", "PJSIP/a", now - 90000, now - 3600)
    insert_binding(setup, "79130000002", "q1", "PJSIP/b", now - 90000, now - 1)
    insert_binding(setup, "79130000003", "q1", "PJSIP/c", now - 100, now + 86300)
    insert_binding(setup, "79130000004", "", "PJSIP/d", now - 86000, now + 120)  # live a little longer
    seed(setup, queue="q2")
    done = vipsticky(setup, "purge")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "purged 2 expired bindings"
    assert sorted((n, q) for n, q, _, _, _ in bindings_rows(setup)) == [
        ("79130000003", "q1"), ("79130000004", ""), (KEY, "q2")]
    done = vipsticky(setup, "purge")
    assert done.returncode == 0 and done.stdout.strip() == "purged 0 expired bindings"


def test_purge_many_expired_rows_in_batches(setup):
    now = db_now(setup)
    expired = [("7913%07d" % i, ("", "q1")[i % 2], "PJSIP/agent%d" % (i % 7), now - 90000, now - 1 - i % 50)
               for i in range(2500)]
    sql(setup, "INSERT INTO numbers_remember (number, queue, agent, last_contact, expires_at) "
               "VALUES (%s, %s, %s, %s, %s)", expired, many=True)
    live = [("7923%07d" % i, "q1", "PJSIP/live", now, now + 1000 + i) for i in range(3)]
    sql(setup, "INSERT INTO numbers_remember (number, queue, agent, last_contact, expires_at) "
               "VALUES (%s, %s, %s, %s, %s)", live, many=True)
    done = vipsticky(setup, "purge")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "purged 2500 expired bindings"
    assert sorted(n for n, _, _, _, _ in bindings_rows(setup)) == sorted(row[0] for row in live)


def test_lookup_never_returns_expired_binding_purged_or_not(setup):
    now = db_now(setup)
    insert_binding(setup, KEY, "q1", "PJSIP/alena", now - 90000, now - 5)
    insert_binding(setup, KEY, "", "PJSIP/alena", now - 90000, now)  # expires this very second
    asterisk = Asterisk(devices={"PJSIP/alena": "NOT_INUSE"}, queues={"q1": {"PJSIP/alena": False}})
    for queue in ("q1", None):
        call = lookup(setup, queue=queue, asterisk=asterisk)
        assert call.variables["STICKY_STATUS"] == "expired"
        assert call.variables["STICKY_AGENT"] == ""
    # The two lookups' outcomes are moved from the spool into the events table too.
    assert vipsticky(setup, "purge").stdout == "purged 2 expired bindings\nrecorded 2 call events\n"
    for queue in ("q1", None):
        call = lookup(setup, queue=queue, asterisk=asterisk)
        assert call.variables["STICKY_STATUS"] == "none"
        assert call.variables["STICKY_AGENT"] == ""


# -- concurrency --------------------------------------------------------------------------------------
def run_at_once(setup, argument_lists):
    """Start every call at the same moment. The database timeouts are raised for these
    tests: 100 Python processes on a small (and possibly busy) machine may starve each
    other of CPU, and a call that fails open on its time budget is not what is tested
    here; a duplicate-key error, a deadlock or a lost row is."""
    setup.rewrite(connect_timeout=30)
    barrier = threading.Barrier(len(argument_lists))

    def one(args):
        barrier.wait(timeout=60)
        return setup.run("sticky_route", args, asterisk=Asterisk(), timeout=60)
    with ThreadPoolExecutor(max_workers=len(argument_lists)) as pool:
        return list(pool.map(one, argument_lists))


def test_concurrent_remember_same_number_one_row(setup):
    calls = run_at_once(setup, [["remember", NUMBER, "q1", "PJSIP/agent%d" % i] for i in range(100)])
    problems = [(c.args[-1], c.exit_code, c.variables, c.warnings, c.stderr[:200]) for c in calls
                if c.exit_code != 0 or c.stderr or c.malformed or c.variables != {"STICKY_STATUS": "stored"}]
    assert problems == []
    rows = bindings_rows(setup)
    assert len(rows) == 1
    assert rows[0][:2] == (KEY, "q1")
    assert rows[0][2] in {"PJSIP/agent%d" % i for i in range(100)}


def test_concurrent_remember_different_numbers(setup):
    numbers = ["8913%07d" % i for i in range(100)]
    calls = run_at_once(setup, [["remember", number, "q1", "PJSIP/agent%d" % i] for i, number in enumerate(numbers)])
    problems = [(c.args[1], c.exit_code, c.variables, c.warnings, c.stderr[:200]) for c in calls
                if c.exit_code != 0 or c.stderr or c.malformed or c.variables != {"STICKY_STATUS": "stored"}]
    assert problems == []
    rows = bindings_rows(setup)
    assert len(rows) == 100
    assert {(n, a) for n, _, a, _, _ in rows} == {("7913%07d" % i, "PJSIP/agent%d" % i) for i in range(100)}


# -- upgrade from the original setup ---------------------------------------------------------------------
def original_setup(make_setup, dialect, extra=""):
    """The original table with the original DDL, before any vipsticky schema exists."""
    setup = make_setup(dialect, extra, install=False)
    sql(setup, ORIGINAL_DDL[dialect])
    now = db_now(setup)
    rows = [
        ("89130751580", str(now - 100), "alena"),      # fresh
        ("3843123456", str(now - 90000), "boris"),     # older than the ttl
        ("anonymous", str(now - 50), "x"),             # junk number
        ("89135556677", "yesterday", "carol"),         # junk date
        ("89137778899", str(now - 50), "a b"),         # junk agent
        ("+79131112233", str(now - 200), "dmitry"),    # duplicates of one key: the newest wins
        ("9131112233", str(now - 3000), "carol"),      # (inserted after the newest, so 'last wins' is wrong)
    ]
    sql(setup, "INSERT INTO numbers_remember (number, date, agent) VALUES (%s, %s, %s)", rows, many=True)
    return setup, now, rows


def snapshot(setup):
    return (tables(setup), columns(setup, "numbers_remember"), columns(setup, "numbers_remember_original"),
            sql(setup, "SELECT * FROM numbers_remember ORDER BY id"),
            sql(setup, "SELECT * FROM numbers_remember_original ORDER BY id"))


@pytest.mark.parametrize("dialect", ["mariadb", "sqlite"])
def test_upgrade_from_original_table(make_setup, dialect):
    setup, now, original_rows = original_setup(make_setup, dialect)
    done = vipsticky(setup, "install-schema")
    assert done.returncode == 0, done.stderr
    assert "upgraded" in done.stdout
    assert {"numbers_remember", "numbers_remember_original"} <= set(tables(setup))
    assert "numbers_remember_upgrading" not in tables(setup)
    # the original rows are kept untouched
    assert sorted(sql(setup, "SELECT number, date, agent FROM numbers_remember_original")) == sorted(original_rows)
    names = [column[0] for column in columns(setup, "numbers_remember")]
    assert {"number", "queue", "agent", "last_contact", "expires_at"} <= set(names)

    asterisk = Asterisk(devices={"SIP/alena": "NOT_INUSE", "SIP/boris": "NOT_INUSE", "SIP/carol": "NOT_INUSE",
                                 "SIP/dmitry": "NOT_INUSE", "SIP/x": "NOT_INUSE"})
    fresh = lookup(setup, number="89130751580", asterisk=asterisk)
    assert fresh.variables == {"STICKY_DIAL_TIMEOUT": "20", "STICKY_AGENT": "SIP/alena", "STICKY_STATUS": "found"}
    old = lookup(setup, number="3843123456", asterisk=asterisk)
    assert old.variables["STICKY_AGENT"] == ""
    assert old.variables["STICKY_STATUS"] in ("expired", "none")  # kept expired, or dropped: never routed
    duplicate = lookup(setup, number="9131112233", asterisk=asterisk)
    assert duplicate.variables["STICKY_AGENT"] == "SIP/dmitry"
    for junk in ("89135556677", "89137778899"):
        assert lookup(setup, number=junk, asterisk=asterisk).variables["STICKY_STATUS"] == "none"
    rows = bindings_rows(setup)
    by_key = {n: (q, a, lc, ex) for n, q, a, lc, ex in rows}
    assert set(by_key) - {"73843123456"} == {KEY, "79131112233"}
    assert by_key[KEY] == ("", "SIP/alena", now - 100, now - 100 + 86400)
    assert by_key["79131112233"] == ("", "SIP/dmitry", now - 200, now - 200 + 86400)
    assert not any(agent in ("x", "SIP/x") for _, _, agent, _, _ in rows)
    live = cli_json(setup, "bindings", "list", "--json")
    assert sorted(b["key"] for b in live) == [KEY, "79131112233"]

    # rerunning changes nothing
    before = snapshot(setup)
    again = vipsticky(setup, "install-schema")
    assert again.returncode == 0, again.stderr
    assert "upgraded" not in again.stdout
    assert snapshot(setup) == before

    # the upgraded table is a working bindings table: one row per (key, queue), upsert
    bind(setup, number="+7 913 075 15 80", agent="PJSIP/boris")
    bind(setup, number="+7 913 075 15 80", queue="q1", agent="PJSIP/alena")
    assert sorted((q, a) for n, q, a, _, _ in bindings_rows(setup) if n == KEY) == [("", "PJSIP/boris"),
                                                                                    ("q1", "PJSIP/alena")]


@pytest.mark.parametrize("dialect", ["mariadb", "sqlite"])
def test_upgrade_legacy_technology(make_setup, dialect):
    setup, now, _ = original_setup(make_setup, dialect, "[sticky]\nlegacy_technology = PJSIP\n")
    done = vipsticky(setup, "install-schema")
    assert done.returncode == 0, done.stderr
    call = lookup(setup, number="89130751580", asterisk=available("PJSIP/alena", "SIP/alena"))
    assert call.variables["STICKY_AGENT"] == "PJSIP/alena"
    assert call.variables["STICKY_STATUS"] == "found"


@pytest.mark.parametrize("dialect", ["mariadb", "sqlite"])
def test_upgraded_bindings_serve_the_shipped_dialplans_queue(make_setup, dialect):
    """Both example dialplans look up in queue support; the upgraded bindings are global."""
    setup, _, _ = original_setup(make_setup, dialect)
    done = vipsticky(setup, "install-schema")
    assert "global scope (they serve every queue)" in done.stdout and "technology SIP/" in done.stdout
    in_support = Asterisk(devices=AllIdle(), queues={"support": {"SIP/alena": False, "PJSIP/alena": False}})
    call = lookup(setup, number="89130751580", queue="support", asterisk=in_support)
    assert (call.variables["STICKY_STATUS"], call.variables["STICKY_AGENT"]) == ("found", "SIP/alena")
    moved = vipsticky(setup, "bindings", "move-technology", "SIP", "PJSIP")
    assert moved.returncode == 0 and moved.stdout == "3 bindings moved from SIP/ to PJSIP/\n", moved  # expired ones too
    call = lookup(setup, number="89130751580", queue="support", asterisk=in_support)
    assert (call.variables["STICKY_STATUS"], call.variables["STICKY_AGENT"]) == ("found", "PJSIP/alena")
    again = vipsticky(setup, "bindings", "move-technology", "SIP", "PJSIP")
    assert again.stdout == "0 bindings moved from SIP/ to PJSIP/\n"
    refused = vipsticky(setup, "bindings", "move-technology", "SIP", "PJSIP/x")
    assert refused.returncode == 1 and "not a channel technology" in refused.stderr


def test_install_schema_on_new_schema_reports_no_upgrade(setup):
    bind(setup, queue="q1")
    before = bindings_rows(setup)
    done = vipsticky(setup, "install-schema")
    assert done.returncode == 0, done.stderr
    assert "upgraded" not in done.stdout
    assert "numbers_remember_original" not in tables(setup)
    assert bindings_rows(setup) == before


# -- CLI -----------------------------------------------------------------------------------------------
def test_cli_bindings_list_empty(setup):
    done = vipsticky(setup, "bindings", "list", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_cli_bindings_set_list_delete(setup):
    for args in (["bindings", "set", NUMBER, "PJSIP/alena", "--queue", "q1"],
                 ["bindings", "set", "+7 913 075 15 80", "PJSIP/boris", "--queue", "q2"],
                 ["bindings", "set", OTHER, "PJSIP/alena"]):
        done = vipsticky(setup, *args)
        assert done.returncode == 0, done.stderr
    now = db_now(setup)
    insert_binding(setup, "79990000000", "q1", "PJSIP/alena", now - 90000, now - 10)  # expired: never listed

    listed = cli_json(setup, "bindings", "list", "--json")
    assert all(set(item) == BINDING_FIELDS for item in listed), listed
    assert sorted((b["key"], b["queue"], b["agent"]) for b in listed) == [
        (OTHER_KEY, "", "PJSIP/alena"), (KEY, "q1", "PJSIP/alena"), (KEY, "q2", "PJSIP/boris")]
    assert all(isinstance(b["seconds_left"], int) and 85000 < b["seconds_left"] <= 86400 for b in listed), listed

    assert [(b["key"], b["agent"]) for b in cli_json(setup, "bindings", "list", "--json", "--queue", "q1")] == [
        (KEY, "PJSIP/alena")]
    assert [b["key"] for b in cli_json(setup, "bindings", "list", "--json", "--queue", "")] == [OTHER_KEY]
    assert sorted((b["key"], b["queue"]) for b in cli_json(setup, "bindings", "list", "--json", "--agent",
                                                             "PJSIP/alena")) == [(OTHER_KEY, ""), (KEY, "q1")]
    assert cli_json(setup, "bindings", "list", "--json", "--agent", "PJSIP/nobody") == []
    assert cli_json(setup, "bindings", "list", "--json", "--queue", "q2", "--agent", "PJSIP/alena") == []

    # what the CLI set is what a call finds
    call = lookup(setup, queue="q2", asterisk=available("PJSIP/boris", queue="q2"))
    assert call.variables["STICKY_AGENT"] == "PJSIP/boris"

    # lookup shows the live bindings, in every scope or only --queue's
    result = cli_json(setup, "lookup", NUMBER, "--json")
    assert all(set(b) == LOOKUP_BINDING_FIELDS for b in result["bindings"]), result
    assert sorted((b["queue"], b["agent"]) for b in result["bindings"]) == [("q1", "PJSIP/alena"),
                                                                            ("q2", "PJSIP/boris")]
    result = cli_json(setup, "lookup", NUMBER, "--json", "--queue", "q2")
    assert [(b["queue"], b["agent"]) for b in result["bindings"]] == [("q2", "PJSIP/boris")]
    assert 85000 < result["bindings"][0]["seconds_left"] <= 86400
    assert cli_json(setup, "lookup", NUMBER, "--json", "--queue", "q3")["bindings"] == []
    assert cli_json(setup, "lookup", "+7 999 000 00 00", "--json")["bindings"] == []  # expired only
    assert cli_json(setup, "lookup", "anonymous", "--json")["bindings"] == []

    done = vipsticky(setup, "bindings", "delete", NUMBER, "--queue", "q1")
    assert done.returncode == 0, done.stderr
    assert sorted((b["key"], b["queue"]) for b in cli_json(setup, "bindings", "list", "--json")) == [
        (OTHER_KEY, ""), (KEY, "q2")]
    bind(setup, queue="", agent="PJSIP/carol")
    done = vipsticky(setup, "bindings", "delete", NUMBER)  # every scope
    assert done.returncode == 0, done.stderr
    assert [(b["key"], b["queue"]) for b in cli_json(setup, "bindings", "list", "--json")] == [(OTHER_KEY, "")]


def test_cli_bindings_set_refreshes_and_uses_queue_ttl(setup):
    setup.rewrite("[queue q1]\nttl = 100\n")
    assert vipsticky(setup, "bindings", "set", NUMBER, "PJSIP/alena", "--queue", "q1").returncode == 0
    assert vipsticky(setup, "bindings", "set", NUMBER, "PJSIP/boris", "--queue", "q1").returncode == 0
    [(number, queue, agent, last_contact, expires_at)] = bindings_rows(setup)
    assert (number, queue, agent, expires_at - last_contact) == (KEY, "q1", "PJSIP/boris", 100)


@pytest.mark.parametrize("args", [
    ["bindings", "set", "anonymous", "PJSIP/alena"],
    ["bindings", "set", "201", "PJSIP/alena", "--queue", "q1"],
    ["bindings", "set", NUMBER, "PJSIP/a&PJSIP/b"],
    ["bindings", "set", NUMBER, "alena", "--queue", "q1"],
    ["bindings", "set", NUMBER, ""],
    ["bindings", "set", NUMBER, "PJSIP/alena", "--queue", "a,b"],
    ["bindings", "delete", "garbage", "--queue", "q1"],
])
def test_cli_bad_number_or_agent(setup, args):
    seed(setup, queue="q1")
    before = bindings_rows(setup)
    done = vipsticky(setup, *args)
    assert done.returncode != 0
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.strip()
    assert "Traceback" not in done.stderr
    assert bindings_rows(setup) == before
