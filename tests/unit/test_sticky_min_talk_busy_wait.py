"""sticky_route's min_talk and busy_wait in process: pending, the hangup handler's every status
(stored, short, unbound, unanswered, bad-agent), waited and busy, and the outcomes recorded."""
import time

import pytest

from agi_scripts import delnum, sticky_route
from agi_scripts.asterisk_standin import Asterisk
from agi_scripts.call import BadArgument
from agi_scripts.events import Outcome
from harness import ChannelDouble, idle

SCRIPT = sticky_route.SCRIPT
NUMBER, KEY = "89130751580", "79130751580"
ALENA, BORIS = "PJSIP/alena", "PJSIP/boris"
MIN_TALK = "[sticky]\nmin_talk = 10\n"


class ChannelRun:
    """sticky_route's handle() on a fresh channel, with the test's database or another one."""

    def __init__(self, unit, args, database=None, asterisk=None):
        self.channel = ChannelDouble(args, "", asterisk)
        self.outcome = SCRIPT.handle(self.channel, self.channel.args, unit.config, database or unit.database)
        self.variables = self.channel.variables


def triples(unit):
    return [(number, queue, agent) for number, queue, agent, _, _ in unit.bindings()]


def test_lookup_pushes_the_hangup_handler_only_with_min_talk(unit):
    plain = unit.handle(SCRIPT, ["lookup", NUMBER, "q1"], asterisk=idle(ALENA, queue="q1"))
    assert "CHANNEL(hangup_handler_push)" not in plain.variables
    unit.configure(MIN_TALK)
    armed = unit.handle(SCRIPT, ["lookup", NUMBER, "q1"], asterisk=idle(ALENA, queue="q1"))
    assert armed.variables["CHANNEL(hangup_handler_push)"] == "vipsticky-hangup,s,1(%s,q1)" % KEY
    assert armed.commands[1] == ("set", "CHANNEL(hangup_handler_push)", "vipsticky-hangup,s,1(%s,q1)" % KEY)
    withheld = unit.handle(SCRIPT, ["lookup", "anonymous", "q1"], asterisk=idle(ALENA, queue="q1"))
    assert "CHANNEL(hangup_handler_push)" not in withheld.variables  # no number: nothing to bind


def test_remember_with_min_talk_only_notes_who_answered_and_when(unit, broken_database):
    unit.configure(MIN_TALK)
    unit.bind(KEY, "q1", BORIS)
    before = unit.bindings()
    for database in (unit.database, broken_database):  # the database is not asked: it may be down
        run = ChannelRun(unit, ["remember", NUMBER, "q1", ALENA], database=database)
        when, agent = run.variables["STICKY_TALK"].split(" ")
        assert agent == ALENA and abs(float(when) - time.time()) < 5
        assert run.variables["STICKY_STATUS"] == "pending"
        assert run.outcome == Outcome("pending", "q1", KEY, agent=ALENA)
    assert unit.bindings() == before


def hangup(unit, variables, queue="q1", key=KEY):
    """The hangup handler on a channel with these variables; (seconds, agent) in
    STICKY_TALK stands for an answer that many seconds before now."""
    variables = dict(variables)
    if isinstance(variables.get("STICKY_TALK"), tuple):
        seconds, agent = variables["STICKY_TALK"]
        variables["STICKY_TALK"] = "%.3f %s" % (time.time() - seconds, agent)
    return ChannelRun(unit, ["hangup", key, queue], asterisk=Asterisk(variables=variables))


@pytest.mark.parametrize("variables, status, bound", [
    ({"STICKY_TALK": (12, ALENA)}, "stored", ALENA),  # the queue's agent, 12 s
    ({"STICKY_TALK": (3, ALENA)}, "short", BORIS),
    ({"STICKY_TALK": (9.5, ALENA)}, "short", BORIS),  # fractions count: not rounded up
    ({"DIALSTATUS": "ANSWER", "STICKY_AGENT": ALENA, "ANSWEREDTIME": "10"}, "stored", ALENA),  # the direct Dial
    ({"DIALSTATUS": "ANSWER", "STICKY_AGENT": ALENA, "ANSWEREDTIME": "9"}, "short", BORIS),
    ({"DIALSTATUS": "NOANSWER", "STICKY_AGENT": ALENA, "ANSWEREDTIME": "0"}, "unanswered", BORIS),
    ({}, "unanswered", BORIS),  # the caller hung up before anyone answered
    ({"STICKY_TALK": (60, ALENA), "STICKY_UNBOUND": "1"}, "unbound", BORIS),
    ({"STICKY_TALK": (60, "DAHDI/g1")}, "bad-agent", BORIS),
    # The queue answered after the sticky agent's Dial did not: the queue's agent counts.
    ({"DIALSTATUS": "NOANSWER", "STICKY_AGENT": BORIS, "STICKY_TALK": (30, ALENA)},
     "stored", ALENA),
], ids=["queue-long", "queue-short", "queue-just-short", "dial-long", "dial-short", "dial-unanswered", "nobody-answered",
        "star-pressed", "bad-agent", "dial-then-queue"])
def test_the_hangup_handler_binds_only_a_long_enough_conversation(unit, variables, status, bound):
    unit.configure(MIN_TALK)
    unit.bind(KEY, "q1", BORIS)
    before = unit.bindings()
    run = hangup(unit, variables)
    assert run.variables == {"STICKY_STATUS": status}
    assert run.outcome.status == status and run.outcome.key == KEY and run.outcome.queue == "q1"
    if bound == BORIS:
        assert unit.bindings() == before  # exactly as it was
    else:
        assert triples(unit) == [(KEY, "q1", bound)]


@pytest.mark.parametrize("args", [["hangup"], ["hangup", "8913x", "q1"], ["hangup", KEY, "a,b"],
                                  ["hangup", "1" * 16, "q1"], ["hangup", KEY, "q1", "extra"]])
def test_the_hangup_action_takes_only_what_lookup_pushed(unit, args):
    unit.configure(MIN_TALK)
    with pytest.raises(BadArgument):
        unit.handle(SCRIPT, args)


def test_star_with_min_talk_marks_the_call_before_deleting(unit, broken_database):
    unit.configure(MIN_TALK)
    outcome, channel, _log = unit.answer(delnum.SCRIPT, [NUMBER], database=broken_database)
    assert outcome == "failed" and channel.variables == {"STICKY_UNBOUND": "1", "DELNUM_STATUS": "error"}
    unit.configure("")  # without min_talk nothing new is set
    assert unit.handle(delnum.SCRIPT, [NUMBER]).variables == {"DELNUM_STATUS": "none"}


class Freeing(Asterisk):
    """An Asterisk where the agent's device is INUSE for the first `busy_answers` DEVICE_STATE questions."""

    def __init__(self, busy_answers, **kwargs):
        super().__init__(**kwargs)
        self.busy_answers = busy_answers

    def value(self, inner):
        if inner.startswith("DEVICE_STATE("):
            self.busy_answers -= 1
            return "INUSE" if self.busy_answers >= 0 else "NOT_INUSE"
        return super().value(inner)


@pytest.mark.parametrize("busy_answers, status, agent", [(3, "waited", ALENA), (10 ** 6, "busy", "")])
def test_busy_wait_waits_for_the_bound_agent_then_gives_up(unit, busy_answers, status, agent):
    unit.configure("[sticky]\nbusy_wait = 1\n")
    unit.bind(KEY, "q1", ALENA)
    asterisk = Freeing(busy_answers, queues={"q1": {ALENA: False}})
    started = time.monotonic()
    run = ChannelRun(unit, ["lookup", NUMBER, "q1"], asterisk=asterisk)
    waited = time.monotonic() - started
    assert run.variables["STICKY_AGENT"] == agent and run.variables["STICKY_STATUS"] == status
    assert ("ring",) in run.channel.commands  # the caller hears ringing meanwhile
    assert (0.2 < waited < 0.6) if status == "waited" else (1.0 <= waited < 1.4)
    assert run.outcome == Outcome(status, "q1", KEY, agent=ALENA)


@pytest.mark.parametrize("state", ["UNAVAILABLE", "INVALID"])
def test_busy_wait_never_waits_for_an_agent_who_is_not_there(unit, state):
    unit.configure("[sticky]\nbusy_wait = 5\n")
    unit.bind(KEY, "q1", ALENA)
    run = ChannelRun(unit, ["lookup", NUMBER, "q1"], asterisk=idle(ALENA, queue="q1", state=state))
    assert run.variables["STICKY_STATUS"] == "unavailable" and ("ring",) not in run.channel.commands


def test_busy_wait_never_waits_for_a_paused_agent(unit):
    unit.configure("[sticky]\nbusy_wait = 5\n")
    unit.bind(KEY, "q1", ALENA)
    run = ChannelRun(unit, ["lookup", NUMBER, "q1"], asterisk=idle(ALENA, queue="q1", paused=True, state="INUSE"))
    assert run.variables["STICKY_STATUS"] == "unavailable" and ("ring",) not in run.channel.commands


def test_the_time_budget_grows_by_busy_wait_for_lookup_only(unit):
    unit.configure("[sticky]\nbusy_wait = 7\n[queue q2]\nbusy_wait = 30\n")
    assert SCRIPT.patience(unit.config, ["lookup", NUMBER, "q1"]) == 7
    assert SCRIPT.patience(unit.config, ["lookup", NUMBER, "q2"]) == 30
    assert SCRIPT.patience(unit.config, ["remember", NUMBER, "q2"]) == 0
