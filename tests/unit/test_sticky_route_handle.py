"""sticky_route.handle() in process: every STICKY_STATUS, dial timeouts, ttl, scopes, bad arguments."""
import pytest

from agi_scripts import sticky_route
from agi_scripts.asterisk_standin import Asterisk
from agi_scripts.call import BadArgument
from harness import idle

SCRIPT = sticky_route.SCRIPT
NUMBER, KEY = "89130751580", "79130751580"
ALENA = "PJSIP/alena"
BUSY_STATES = ("UNAVAILABLE", "INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD", "INVALID")
NO_NUMBERS = ["anonymous", "", "garbage", "201", "9130751580' OR '1'='1"]


def lookup(unit, queue=None, number=NUMBER, asterisk=None, caller_id=""):
    args = ["lookup"] + ([] if number is None else [number]) + ([] if queue is None else [queue])
    return unit.handle(SCRIPT, args, caller_id=caller_id, asterisk=asterisk)


def remember(unit, queue="q1", agent=ALENA, number=NUMBER, asterisk=None):
    """remember with the agent as an argument (agent=None: no argument, ${MEMBERINTERFACE})."""
    args = ["remember", number, queue] + ([] if agent is None else [agent])
    return unit.handle(SCRIPT, args, asterisk=asterisk)


def looked_up(agent, status, timeout="20"):
    return {"STICKY_DIAL_TIMEOUT": timeout, "STICKY_AGENT": agent, "STICKY_STATUS": status}


def triples(unit):
    return [(number, queue, agent) for number, queue, agent, _, _ in unit.bindings()]


# -- lookup ------------------------------------------------------------------------------------
LOOKUPS = [  # id, binding (queue, agent) or None, the lookup's queue, Asterisk, (STICKY_AGENT, STICKY_STATUS)
    ("found-in-queue", ("q1", ALENA), "q1", idle(ALENA, queue="q1"), (ALENA, "found")),
    ("found-sip", ("q1", "SIP/alena"), "q1", idle("SIP/alena", queue="q1"), ("SIP/alena", "found")),
    ("found-local-channel", ("q1", "Local/alena@agents/n"), "q1", idle("Local/alena@agents/n", queue="q1"),
     ("Local/alena@agents/n", "found")),
    ("found-unknown-device-state", ("q1", ALENA), "q1", idle(ALENA, queue="q1", state="UNKNOWN"), (ALENA, "found")),
    ("found-global-ignores-queues", ("", ALENA), None,
     Asterisk(devices={ALENA: "NOT_INUSE"}, queues={"q1": {ALENA: True}}), (ALENA, "found")),
    ("none-no-binding", None, "q1", idle(ALENA, queue="q1"), ("", "none")),
    ("none-another-queue", ("q2", ALENA), "q1", idle(ALENA, queue="q1"), ("", "none")),
    ("none-global-is-its-own-scope", ("q1", ALENA), None, idle(ALENA), ("", "none")),
    ("unavailable-not-a-member", ("q1", ALENA), "q1",
     Asterisk(devices={ALENA: "NOT_INUSE"}, queues={"q1": {"PJSIP/boris": False}, "q2": {ALENA: False}}),
     ("", "unavailable")),
    ("unavailable-member-with-similar-name-only", ("q1", "PJSIP/alen"), "q1",
     Asterisk(devices={"PJSIP/alen": "NOT_INUSE"}, queues={"q1": {ALENA: False}}), ("", "unavailable")),
    ("unavailable-paused", ("q1", ALENA), "q1", idle(ALENA, queue="q1", paused=True), ("", "unavailable")),
    ("unavailable-device-unknown-to-asterisk", ("q1", ALENA), "q1", Asterisk(queues={"q1": {ALENA: False}}),
     ("", "unavailable")),
]


@pytest.mark.parametrize("binding, queue, asterisk, expected", [case[1:] for case in LOOKUPS],
                         ids=[case[0] for case in LOOKUPS])
def test_lookup_status(unit, binding, queue, asterisk, expected):
    if binding:
        unit.bind(KEY, *binding)
    unit.bind("380441234567", queue or "", ALENA)  # someone else's binding never counts
    assert lookup(unit, queue, asterisk=asterisk).variables == looked_up(*expected)
    assert len(unit.bindings()) == (2 if binding else 1)  # a lookup writes nothing


@pytest.mark.parametrize("state", BUSY_STATES)
@pytest.mark.parametrize("queue", ["q1", None], ids=["queue", "global"])
def test_lookup_unavailable_when_the_device_is_busy(unit, state, queue):
    unit.bind(KEY, queue or "", ALENA)
    assert lookup(unit, queue, asterisk=idle(ALENA, queue=queue, state=state)).variables == \
        looked_up("", "unavailable")


@pytest.mark.parametrize("queue, asked", [
    # One round trip (the member list last, as it holds commas), then paused for a member only.
    ("q1", ["${QUEUE_EXISTS(q1)}|${DEVICE_STATE(PJSIP/alena)}|${QUEUE_MEMBER_LIST(q1)}",
            "${QUEUE_MEMBER(q1,paused,PJSIP/alena)}"]),
    (None, ["${DEVICE_STATE(PJSIP/alena)}"]),
], ids=["queue", "global"])
def test_lookup_asks_asterisk_only_what_the_scope_needs(unit, queue, asked):
    unit.bind(KEY, queue or "", ALENA)
    channel = lookup(unit, queue, asterisk=idle(ALENA, queue=queue))
    assert [command[1] for command in channel.commands if command[0] == "evaluate"] == asked
    assert [command[1] for command in channel.commands if command[0] == "set"] == [
        "STICKY_DIAL_TIMEOUT", "STICKY_AGENT", "STICKY_STATUS"]


@pytest.mark.parametrize("seconds_left", [-5, 0], ids=["past", "this-second"])
def test_lookup_expired_until_remembered_again(unit, seconds_left):
    """An expired binding that purge has not removed yet is never routed by; a new
    remember revives the same row."""
    now = unit.now()
    unit.bind(KEY, "q1", ALENA, last_contact=now - 90000, expires_at=now + seconds_left)
    assert lookup(unit, "q1", asterisk=idle(ALENA, queue="q1")).variables == looked_up("", "expired")
    assert remember(unit).variables == {"STICKY_STATUS": "stored"}
    assert lookup(unit, "q1", asterisk=idle(ALENA, queue="q1")).variables == looked_up(ALENA, "found")
    assert len(unit.bindings()) == 1


def test_lookup_number_defaults_to_the_caller_id(unit):
    unit.bind(KEY, "", ALENA)
    channel = lookup(unit, number=None, caller_id="+7 913 075 15 80", asterisk=idle(ALENA))
    assert channel.variables == looked_up(ALENA, "found")


@pytest.mark.parametrize("number", NO_NUMBERS)
def test_no_number(unit, number):
    unit.bind(KEY, "q1", ALENA)
    before = unit.bindings()
    assert lookup(unit, "q1", number, asterisk=idle(ALENA, queue="q1")).variables == looked_up("", "no-number")
    assert remember(unit, number=number).variables == {"STICKY_STATUS": "no-number"}
    assert unit.bindings() == before


def test_lookup_without_number_and_a_withheld_caller_id_is_no_number(unit):
    assert lookup(unit, number=None, caller_id="anonymous").variables == looked_up("", "no-number")


def test_dial_timeout_from_config_and_per_queue_whatever_the_status(unit):
    unit.configure("[sticky]\ndial_timeout = 15\n[queue vip]\ndial_timeout = 7\n")
    unit.bind(KEY, "vip", ALENA)
    assert lookup(unit, "vip", asterisk=idle(ALENA, queue="vip")).variables == looked_up(ALENA, "found", "7")
    assert lookup(unit, "q1").variables["STICKY_DIAL_TIMEOUT"] == "15"
    assert lookup(unit).variables["STICKY_DIAL_TIMEOUT"] == "15"
    assert lookup(unit, "vip", "anonymous").variables == looked_up("", "no-number", "7")


# -- remember ----------------------------------------------------------------------------------
@pytest.mark.parametrize("agent", ["PJSIP/boris", "SIP/alena", "Local/alena@agents/n", "PJSIP/" + "a" * 100])
def test_remember_stores_the_agent_argument_as_given(unit, agent):
    channel = remember(unit, agent=agent)
    assert channel.variables == {"STICKY_STATUS": "stored"}
    assert channel.commands == [("set", "STICKY_STATUS", "stored")]  # nothing asked of Asterisk
    assert triples(unit) == [(KEY, "q1", agent)]


@pytest.mark.parametrize("fourth", [None, ""], ids=["no-agent-argument", "empty-agent-argument"])
@pytest.mark.parametrize("member", [ALENA, "Local/alena@agents/n"])
def test_remember_defaults_to_memberinterface(unit, fourth, member):
    channel = remember(unit, agent=fourth, asterisk=Asterisk(variables={"MEMBERINTERFACE": member}))
    assert channel.variables == {"STICKY_STATUS": "stored"}
    assert channel.commands == [("get", "MEMBERINTERFACE"), ("set", "STICKY_STATUS", "stored")]
    assert triples(unit) == [(KEY, "q1", member)]


def test_remember_argument_wins_over_memberinterface(unit):
    remember(unit, agent="PJSIP/boris", asterisk=Asterisk(variables={"MEMBERINTERFACE": ALENA}))
    assert triples(unit) == [(KEY, "q1", "PJSIP/boris")]


def test_remember_without_queue_is_the_global_scope(unit):
    channel = unit.handle(SCRIPT, ["remember", NUMBER], asterisk=Asterisk(variables={"MEMBERINTERFACE": ALENA}))
    assert channel.variables == {"STICKY_STATUS": "stored"}
    assert triples(unit) == [(KEY, "", ALENA)]


@pytest.mark.parametrize("agent", ["PJSIP/a&PJSIP/b", "PJSIP/a,b", "PJSIP/a b", "alena", '"PJSIP/alena"',
                                   "PJSIP/'a'", "PJSIP/a|b", "PJSIP/" + "a" * 120])
def test_remember_bad_agent_argument_writes_nothing(unit, agent):
    assert remember(unit, agent=agent).variables == {"STICKY_STATUS": "bad-agent"}
    assert unit.bindings() == []


@pytest.mark.parametrize("variables", [{"MEMBERINTERFACE": "PJSIP/a&PJSIP/b"}, {"MEMBERINTERFACE": "alena"}, {}],
                         ids=["two-interfaces", "no-technology", "unset"])
def test_remember_bad_memberinterface_writes_nothing(unit, variables):
    assert remember(unit, agent=None, asterisk=Asterisk(variables=variables)).variables == {
        "STICKY_STATUS": "bad-agent"}
    assert unit.bindings() == []


def test_one_row_per_number_key_and_queue(unit):
    for number, agent in (("8 913 075 15 80", ALENA), ("+79130751580", "PJSIP/boris"),
                          ("9130751580", "Local/carol@agents/n")):
        remember(unit, agent=agent, number=number)
    assert triples(unit) == [(KEY, "q1", "Local/carol@agents/n")]


def test_ttl_per_queue_and_global(unit):
    unit.configure("[sticky]\nttl = 500\n[queue q1]\nttl = 100\n[queue q3]\ndial_timeout = 9\n")
    for queue in ("q1", "q2", "q3", ""):
        remember(unit, queue)
    spans = {queue: expires_at - last_contact for _, queue, _, last_contact, expires_at in unit.bindings()}
    assert spans == {"q1": 100, "q2": 500, "q3": 500, "": 500}  # q3 overrides only dial_timeout


def test_default_ttl_is_a_day(unit):
    remember(unit)
    [(_, _, _, last_contact, expires_at)] = unit.bindings()
    assert expires_at - last_contact == 86400


def test_sliding_ttl_remember_again_moves_the_expiry_forward(unit):
    before = unit.now()
    remember(unit)
    unit.sql("UPDATE numbers_remember SET last_contact = ?, expires_at = ?", (before - 80000, before + 50))
    now = unit.now()
    remember(unit, agent="PJSIP/boris")  # e.g. the refresh after an answered direct Dial
    [(number, queue, agent, last_contact, expires_at)] = unit.bindings()
    assert (number, queue, agent) == (KEY, "q1", "PJSIP/boris")
    assert now <= last_contact <= unit.now()
    assert expires_at == last_contact + 86400


def test_scopes_are_separate(unit):
    agents = (ALENA, "PJSIP/boris", "PJSIP/carol")
    asterisk = Asterisk(devices={agent: "NOT_INUSE" for agent in agents},
                        queues={queue: {agent: False for agent in agents} for queue in ("q1", "q2", "q3")})

    def found():
        return {queue: lookup(unit, queue, asterisk=asterisk).variables["STICKY_AGENT"] for queue in ("q1", "q2")}
    remember(unit, "q1", ALENA)
    remember(unit, "q2", "PJSIP/boris")
    assert found() == {"q1": ALENA, "q2": "PJSIP/boris"}
    assert lookup(unit, "q3", asterisk=asterisk).variables["STICKY_STATUS"] == "none"
    assert lookup(unit, asterisk=asterisk).variables["STICKY_STATUS"] == "none"
    remember(unit, "", "PJSIP/carol")
    assert lookup(unit, asterisk=asterisk).variables["STICKY_AGENT"] == "PJSIP/carol"
    assert found() == {"q1": ALENA, "q2": "PJSIP/boris"}  # the global binding left the queues' alone


# -- arguments the dialplan got wrong -------------------------------------------------------------
@pytest.mark.parametrize("args", [["frobnicate", NUMBER], [], ["LOOKUP", NUMBER], ["lookup", NUMBER, "a,b"],
                                  ["lookup", NUMBER, "${EVIL}"], ["lookup", "anonymous", "a b"],
                                  ["remember", NUMBER, "a,b", ALENA], ["remember", NUMBER, "q(1)", ALENA]],
                         ids=["unknown-action", "no-action", "action-in-capitals", "queue-with-comma",
                              "queue-with-expression", "bad-queue-before-the-number", "remember-queue-with-comma",
                              "remember-queue-with-parenthesis"])
def test_bad_argument_raises_and_the_call_fails_open(unit, args):
    unit.bind(KEY, "", ALENA)
    before = unit.bindings()
    with pytest.raises(BadArgument):
        unit.handle(SCRIPT, args, asterisk=idle(ALENA))
    outcome, channel, log = unit.answer(SCRIPT, args, asterisk=idle(ALENA))
    assert outcome == "failed"
    assert channel.variables.get("STICKY_STATUS") == "error" and channel.variables.get("STICKY_AGENT") == ""
    assert len(channel.warnings) == 1 and len(log) == 1
    assert unit.bindings() == before


# -- which agents may be stored and dialled, and which binding serves a queue ---------------------
@pytest.mark.parametrize("extra, agent, allowed", [
    ("", "IAX2/trunk/123", False),  # * stands for one name: never a / inside it
    ("", "Local/0900123456@outbound/n", False),  # a Local channel outside the agents' context
    ("", "IAX2/alena", True),
    ("[sticky]\nagents = PJSIP/*\n", "SIP/alena", False),
    ("[sticky]\nagents = PJSIP/*\n[queue q1]\nagents = SIP/*\n", "SIP/alena", True),  # per queue
])
def test_only_agents_matching_the_agents_patterns_are_stored_and_found(unit, extra, agent, allowed):
    unit.configure(extra)
    channel = remember(unit, agent=agent)
    assert channel.variables == {"STICKY_STATUS": "stored" if allowed else "bad-agent"}
    assert len(channel.warnings) == (0 if allowed else 1)
    unit.sql("DELETE FROM numbers_remember")
    unit.bind(KEY, "q1", agent)  # a binding that does not match (an old one, a direct write) is never dialled
    expected = looked_up(agent, "found") if allowed else looked_up("", "unavailable")
    assert lookup(unit, "q1", asterisk=idle(agent, queue="q1")).variables == expected


@pytest.mark.parametrize("own", [None, "expired"], ids=["no-own-binding", "own-binding-expired"])
def test_a_global_binding_serves_a_queue_without_a_live_binding_of_its_own(unit, own):
    if own:
        now = unit.now()
        unit.bind(KEY, "q1", "PJSIP/boris", last_contact=now - 90000, expires_at=now - 5)
    unit.bind(KEY, "", ALENA)
    assert lookup(unit, "q1", asterisk=idle(ALENA, queue="q1")).variables == looked_up(ALENA, "found")
    unit.bind(KEY, "q2", "PJSIP/boris")  # a queue's own live binding wins
    assert lookup(unit, "q2", asterisk=idle(ALENA, "PJSIP/boris", queue="q2")).variables == \
        looked_up("PJSIP/boris", "found")


def test_an_empty_number_argument_is_the_caller_id(unit):
    unit.bind(KEY, "", ALENA)
    assert lookup(unit, number="", caller_id=NUMBER, asterisk=idle(ALENA)).variables == looked_up(ALENA, "found")


def test_lookup_in_a_queue_asterisk_does_not_know_warns(unit):
    channel = lookup(unit, "suport", asterisk=idle(ALENA, queue="support"))
    assert channel.variables == looked_up("", "none")
    assert len(channel.warnings) == 1 and "suport" in channel.warnings[0]
    assert lookup(unit, "support", asterisk=idle(ALENA, queue="support")).warnings == []


@pytest.mark.parametrize("args", [["lookup", NUMBER, "q1", ALENA], ["remember", NUMBER, "q1", ALENA, "x"]],
                         ids=["lookup", "remember"])
def test_more_arguments_than_the_action_takes_are_refused(unit, args):
    with pytest.raises(BadArgument):
        unit.handle(SCRIPT, args)
    assert unit.bindings() == []
