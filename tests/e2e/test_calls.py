"""The whole flow in a real Asterisk (issue 10): the shipped dialplan, queue and feature
examples, the installed scripts, a real database; callers and agents are Local channels.

Assertions read the database, AMI events, the queue_log and the Asterisk log.
"""
import socket
import time

import pytest

from utils import ORIGINAL_DDL

from .real_asterisk import (DIAL_TIMEOUT, MEMBERS, QUEUE, VIPSTICKY_INI, agent_phone, interface, poll,
                            seconds_between)

NUMBER = "8 (913) 075-15-80"  # the caller, as a trunk might present it
SAME_NUMBER = "+79130751580"  # the same caller in another format
KEY = "79130751580"
NORMAL_PRIORITY, VIP_PRIORITY = "5", "10"  # vipsticky.conf.example's defaults


def queue_joins(pbx, call):
    return pbx.ami.find("QueueCallerJoin", Uniqueid=call.line_id)


# -- VIP ----------------------------------------------------------------------------------
def test_vip_caller_joining_after_two_normal_callers_is_answered_first(scene):
    pbx = scene.pbx
    scene.vipsticky("vip", "add", "+7 913 075-15-80")
    for agent in MEMBERS:
        pbx.pause(agent)
    normal = []
    for position, number in enumerate(["+79001112233", "+79001112244"], 1):
        normal.append(pbx.call(number))
        assert pbx.ami.wait_for("QueueCallerJoin", Uniqueid=normal[-1].line_id)["Position"] == str(position)
    vip = pbx.call(NUMBER)
    assert pbx.ami.wait_for("QueueCallerJoin", Uniqueid=vip.line_id)["Position"] == "1"
    assert [pbx.variables(call.line_id)["QUEUE_PRIO"] for call in normal + [vip]] == \
        [NORMAL_PRIORITY, NORMAL_PRIORITY, VIP_PRIORITY]
    assert pbx.variables(vip.line_id)["VIP"] == "1"

    pbx.pause("alena", False)
    first = pbx.ami.wait_for("AgentConnect", timeout=15)
    assert first["Uniqueid"] == vip.line_id, first
    connects = poll(lambda: [row[1] for row in pbx.queue_log() if row[4] == "CONNECT"], 5)
    assert connects == [vip.line_id], pbx.queue_log()


# -- sticky agent -------------------------------------------------------------------------
def test_first_call_binds_whoever_answered_and_second_call_goes_straight_to_them(scene):
    pbx = scene.pbx
    first = pbx.call(NUMBER)
    connect = pbx.connected(first)
    agent = connect["Interface"]
    assert agent in [interface(name) for name in MEMBERS] and agent.endswith("/n"), connect
    assert pbx.remembered(first) == "stored"
    assert scene.wait_bindings([(KEY, QUEUE, agent)]) == [(KEY, QUEUE, agent)]
    contact = scene.bindings()[0][3]
    pbx.ended(first)

    since = pbx.ami.mark()
    second = pbx.call(SAME_NUMBER)
    dial = pbx.ami.wait_for("DialEnd", Uniqueid=second.line_id, timeout=10)
    assert dial["DialStatus"] == "ANSWER" and dial["DestChannel"].startswith(agent.rsplit("/", 1)[0] + "-"), dial
    assert pbx.variables(second.line_id)["STICKY_STATUS"] == "found"
    assert pbx.variables(second.line_id)["STICKY_AGENT"] == agent
    # Dial's U() subroutine refreshed the binding on the agent's channel before the bridge.
    assert pbx.wait_variable(dial["DestUniqueid"], "STICKY_STATUS") == "stored"
    assert pbx.ami.wait_for("BridgeEnter", Uniqueid=second.line_id, since=since)
    assert not queue_joins(pbx, second)
    assert second.line_id not in [row[1] for row in pbx.queue_log()]
    (key, queue, bound, refreshed, _), = scene.bindings()
    assert (key, queue, bound) == (KEY, QUEUE, agent) and refreshed >= contact


def test_bound_agent_who_does_not_answer_hands_the_call_to_the_queue(scene):
    pbx = scene.pbx
    scene.bind(SAME_NUMBER, "alena")
    pbx.set_agent("alena", "ring")
    call = pbx.call(NUMBER)
    begin = pbx.ami.wait_for("DialBegin", Uniqueid=call.line_id)
    assert begin["DestChannel"].startswith("Local/alena@agents-")
    end = pbx.ami.wait_for("DialEnd", Uniqueid=call.line_id, timeout=DIAL_TIMEOUT + 5)
    assert end["DialStatus"] == "NOANSWER" and DIAL_TIMEOUT - 0.5 < seconds_between(begin, end) < DIAL_TIMEOUT + 1
    assert pbx.ami.wait_for("QueueCallerJoin", Uniqueid=call.line_id)
    connect = pbx.connected(call)
    assert connect["Interface"] == interface("boris")
    assert pbx.remembered(call) == "stored"
    assert scene.wait_bindings([(KEY, QUEUE, interface("boris"))]) == [(KEY, QUEUE, interface("boris"))]


@pytest.mark.parametrize("absence", ["paused", "not-a-member"])
def test_bound_agent_who_cannot_take_calls_is_not_rung(scene, absence):
    pbx = scene.pbx
    if absence == "paused":
        bound, takers = "alena", ["boris"]
        pbx.pause("alena")
    else:  # dima has an extension in the agents context but is no member of the queue
        bound, takers = "dima", MEMBERS
    scene.bind(SAME_NUMBER, bound)
    since = pbx.ami.mark()
    call = pbx.call(NUMBER)
    agent = pbx.connected(call)["Interface"]
    assert agent in [interface(name) for name in takers]
    assert pbx.remembered(call) == "stored"
    assert [event["Value"] for event in pbx.ami.find("VarSet", Uniqueid=call.line_id, Variable="STICKY_STATUS")] == \
        ["unavailable", "stored"]
    assert not pbx.ami.find("Newexten", since, Uniqueid=call.line_id, Application="Dial")
    assert not pbx.channels_of(bound, since), "the bound agent was rung"
    assert scene.wait_bindings([(KEY, QUEUE, agent)]) == [(KEY, QUEUE, agent)]


# -- the * key ----------------------------------------------------------------------------
MISSING_SOUND = "vipsticky-no-such-sound"


@pytest.mark.parametrize("sound", ["beep", MISSING_SOUND])
def test_caller_pressing_star_forgets_the_agent_and_the_call_goes_on(start_scene, sound):
    scene = start_scene("[sticky]\nunbind_sound = %s\n" % sound)
    pbx = scene.pbx
    call = pbx.call(NUMBER)
    connect = pbx.connected(call)
    assert pbx.remembered(call) == "stored"
    assert scene.agents_bound() == [(KEY, QUEUE, connect["Interface"])]
    pbx.press(call.phone, "*")
    assert pbx.wait_variable(call.line_id, "DELNUM_STATUS") == "deleted"
    assert scene.wait_bindings([]) == []
    # The caller's channel ran the unbind subroutine to its Return(), back into the call.
    pbx.ami.wait_for("Newexten", Uniqueid=call.line_id, Context="vipsticky-unbind", Application="Return")
    if sound == MISSING_SOUND:  # STREAM FILE of a missing file ends the AGI after the delete
        assert pbx.variables(call.line_id)["AGISTATUS"] == "FAILURE"
    # Still bridged: keys pressed on either handset reach the other one.
    agent = agent_phone(connect)
    assert pbx.still_talking(call.phone, agent) and pbx.still_talking(agent, call.phone, "7")
    assert not pbx.ami.find("Hangup", Linkedid=call.phone_id)


def test_agent_pressing_star_changes_nothing(scene):
    pbx = scene.pbx
    call = pbx.call(NUMBER)
    connect = pbx.connected(call)
    assert pbx.remembered(call) == "stored"
    bound = scene.agents_bound()
    assert bound == [(KEY, QUEUE, connect["Interface"])]
    # The star reaches the caller as an ordinary key: no feature ran on the agent's side.
    assert pbx.still_talking(agent_phone(connect), call.phone, "*")
    time.sleep(0.5)  # what a wrongly triggered delnum would take to run
    assert not pbx.ami.find("VarSet", Variable="DELNUM_STATUS")
    assert not pbx.logged("VERBOSE", "delnum")
    assert scene.agents_bound() == bound


# -- numbers that are no number ------------------------------------------------------------
@pytest.mark.parametrize("withheld", ["", "anonymous"], ids=["empty", "anonymous"])
def test_withheld_caller_id_gets_normal_priority_and_is_never_bound(scene, withheld):
    pbx = scene.pbx
    call = pbx.call(withheld)
    pbx.connected(call)
    assert pbx.remembered(call) == "no-number"
    variables = pbx.variables(call.line_id)
    assert (variables["QUEUE_PRIO"], variables["VIP"], variables["STICKY_AGENT"]) == (NORMAL_PRIORITY, "0", "")
    assert scene.bindings() == []


# -- failures -----------------------------------------------------------------------------
# Each failure is one line "vipsticky SCRIPT: REASON; failing open" at this level in the
# Asterisk log (issue 11: WARNING, through Log(); before it the scripts wrote a VERBOSE line).
FAILURE_LOG_LEVEL = "WARNING"
CONNECT_TIMEOUT = 1


class BlackHole:
    """A TCP port that accepts connections (the kernel completes the handshake) and never
    says a word: a MariaDB that hangs."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(50)
        self.port = self.socket.getsockname()[1]

    def close(self):
        self.socket.close()


@pytest.fixture
def dead_database(combo, tmp_path):
    """The vipsticky config of a database that is down: a MariaDB that never answers, or an
    SQLite file in a folder that does not exist."""
    hole = BlackHole()
    url = {"mariadb": "mysql://asterisk:secret@127.0.0.1:%d/asterisk" % hole.port,
           "sqlite": "sqlite:///%s" % (tmp_path / "no-such-folder" / "vipsticky.sqlite3")}[combo[2]]
    yield "[database]\nurl = %s\nconnect_timeout = %d\n%s" % (url, CONNECT_TIMEOUT, VIPSTICKY_INI)
    hole.close()


def test_database_down_the_call_still_reaches_the_queue_in_bounded_time(start_scene, dead_database):
    pbx = start_scene(config_text=dead_database).pbx
    call = pbx.call(NUMBER)
    # Two scripts before Queue(), each failing open within connect_timeout + 1 s.
    budget = 2 * (CONNECT_TIMEOUT + 1)
    joined = pbx.ami.wait_for("QueueCallerJoin", timeout=budget + 10, Uniqueid=call.line_id)
    assert seconds_between(pbx.ami.find("Newchannel", Uniqueid=call.line_id)[0], joined) < budget
    pbx.connected(call)
    assert pbx.remembered(call) == "error"
    variables = pbx.variables(call.line_id)
    assert (variables["QUEUE_PRIO"], variables["STICKY_AGENT"]) == (NORMAL_PRIORITY, "")
    # One line per failed script run: vip_or_not, sticky_route lookup, sticky_route remember.
    failures = pbx.logged(FAILURE_LOG_LEVEL, "failing open")
    assert len(failures) == 3, failures
    assert [sum("vipsticky %s:" % script in line for line in failures) for script in ("vip_or_not", "sticky_route")] \
        == [1, 2], failures


# -- hangups ------------------------------------------------------------------------------
def test_caller_hanging_up_during_the_direct_dial_leaves_the_binding_as_it_was(scene):
    pbx = scene.pbx
    scene.bind(NUMBER, "alena")
    before = scene.bindings()
    pbx.set_agent("alena", "ring")
    call = pbx.call(SAME_NUMBER)
    pbx.ami.wait_for("DialBegin", Uniqueid=call.line_id)
    pbx.ended(call)
    assert pbx.ami.wait_for("DialEnd", Uniqueid=call.line_id)["DialStatus"] == "CANCEL"
    assert not queue_joins(pbx, call)
    assert scene.bindings() == before


def test_caller_hanging_up_in_the_queue_leaves_no_binding(scene):
    pbx = scene.pbx
    for agent in MEMBERS:
        pbx.set_agent(agent, "ring")
    call = pbx.call(NUMBER)
    pbx.ami.wait_for("QueueCallerJoin", Uniqueid=call.line_id)
    pbx.ami.wait_for("AgentCalled", Uniqueid=call.line_id)  # an agent's phone is ringing
    pbx.ended(call)
    assert pbx.ami.wait_for("QueueCallerAbandon", Uniqueid=call.line_id)
    assert "ABANDON" in [row[4] for row in pbx.queue_log() if row[1] == call.line_id]
    assert scene.bindings() == []


# -- upgrade from the original setup (issue 11) -------------------------------------------
def test_a_binding_upgraded_from_the_original_table_reaches_its_agent(scene):
    """The original numbers_remember(number, date, agent), upgraded by install-schema: its
    bindings are global, and the shipped dialplan (queue support) dials the agent directly."""
    setup, pbx = scene.setup, scene.pbx
    dialect = setup.dialect
    _, now = setup.query("DROP TABLE numbers_remember")
    setup.query(ORIGINAL_DDL[dialect],
                "INSERT INTO numbers_remember (number, date, agent) VALUES ('89130751580', '%d', '%s')"
                % (now - 60, interface("alena")))
    upgraded = scene.vipsticky("install-schema")
    assert "1 binding kept in the global scope" in upgraded, upgraded
    call = pbx.call(NUMBER)
    dial = pbx.ami.wait_for("DialEnd", Uniqueid=call.line_id, timeout=10)
    assert dial["DialStatus"] == "ANSWER" and dial["DestChannel"].startswith("Local/alena@agents-"), dial
    assert pbx.variables(call.line_id)["STICKY_STATUS"] == "found"
    assert not queue_joins(pbx, call)
