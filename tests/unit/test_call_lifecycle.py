"""call.answer() in process: ok, hangup or failed; on failure the fail-open values, one
WARNING for the Asterisk log and one log line with the same reason. And the channel double
itself: it must keep the methods of the real Channel."""
import inspect
import time

import pytest

from agi_scripts import delnum, sticky_route, vip_or_not
from agi_scripts.agi import Channel
from agi_scripts.call import Script
from harness import ChannelDouble, idle
from utils import FAIL_OPEN

NUMBER = "89130751580"
CALLS = [  # one call of each script that reads the database, and what it sets when it works
    (vip_or_not.SCRIPT, [NUMBER], {"QUEUE_PRIO": "5", "VIP": "0", "VIP_LABEL": ""}),
    (sticky_route.SCRIPT, ["lookup", NUMBER], {"STICKY_DIAL_TIMEOUT": "20", "STICKY_AGENT": "",
                                              "STICKY_STATUS": "none"}),
    (sticky_route.SCRIPT, ["remember", NUMBER, "", "PJSIP/alena"], {"STICKY_STATUS": "stored"}),
    (delnum.SCRIPT, [NUMBER], {"DELNUM_STATUS": "none"}),
]
IDS = ["vip_or_not", "lookup", "remember", "delnum"]
each_call = pytest.mark.parametrize("script, args, normal", CALLS, ids=IDS)


def check_failed(channel, log, script, reason=None):
    """One WARNING and one log line naming the script and the same reason."""
    assert len(log) == 1, log
    assert log[0].startswith(script.name + ": ") and log[0].endswith("; failing open"), log
    assert channel.warnings == ["vipsticky " + log[0]]
    if reason is not None:
        assert reason in log[0], log


@each_call
def test_ok(unit, script, args, normal):
    outcome, channel, log = unit.answer(script, args, asterisk=idle("PJSIP/alena"))
    assert (outcome, channel.variables, channel.warnings, log) == ("ok", normal, [], [])


@each_call
def test_failed_when_the_database_fails(unit, broken_database, script, args, normal):
    outcome, channel, log = unit.answer(script, args, database=broken_database)
    assert outcome == "failed"
    expected = dict(FAIL_OPEN[script.name])
    if args[0] == "lookup":
        expected["STICKY_DIAL_TIMEOUT"] = "20"  # set before the database was asked
    assert channel.variables == expected
    check_failed(channel, log, script, "cannot open SQLite database")


@pytest.mark.parametrize("hangup_at", [0, 1])
def test_hangup_ends_the_call_without_failing_open(unit, hangup_at):
    unit.bind("79130751580", "", "PJSIP/alena")
    outcome, channel, log = unit.answer(sticky_route.SCRIPT, ["lookup", NUMBER], asterisk=idle("PJSIP/alena"),
                                        hangup_at=hangup_at)
    assert outcome == "hangup"
    assert len(channel.commands) == hangup_at
    assert "STICKY_STATUS" not in channel.variables and log == []


def test_a_hangup_while_failing_open_is_still_failed(unit, broken_database):
    """The database fails, then the caller is gone before the WARNING: nothing raises."""
    outcome, channel, log = unit.answer(sticky_route.SCRIPT, ["lookup", NUMBER], database=broken_database,
                                        hangup_at=1)
    assert outcome == "failed"
    assert channel.commands == [("set", "STICKY_DIAL_TIMEOUT", 20)]
    assert len(log) == 1


def test_an_unexpected_error_is_named_and_fails_open(unit):
    def handle(channel, args, config, database):
        raise ValueError("boom\nsecond line")
    script = Script("delnum", handle, delnum.fail_open)
    outcome, channel, log = unit.answer(script, [NUMBER])
    assert (outcome, channel.variables) == ("failed", FAIL_OPEN["delnum"])
    check_failed(channel, log, script, "ValueError: boom\\nsecond line")


def test_the_deadline_ends_a_call_that_waits_too_long(unit):
    def handle(channel, args, config, database):
        time.sleep(2)
    script = Script("vip_or_not", handle, vip_or_not.fail_open)
    started = time.monotonic()
    outcome, channel, log = unit.answer(script, [NUMBER], deadline=0.1)
    assert time.monotonic() - started < 1
    assert (outcome, channel.variables) == ("failed", FAIL_OPEN["vip_or_not"])
    check_failed(channel, log, script, "no answer from the database in time")


# -- the double ---------------------------------------------------------------------------------
def public_methods(cls):
    return {name: list(inspect.signature(member).parameters) for name, member in vars(cls).items()
            if not name.startswith("_") and callable(member) and not isinstance(member, classmethod)}


def test_the_double_has_the_methods_of_the_real_channel():
    """What a handler may call on a Channel, the double answers, with the same parameters."""
    assert public_methods(ChannelDouble) == public_methods(Channel)
    assert isinstance(inspect.getattr_static(Channel, "caller_id"), property)


# -- the outcome of each run, in the events spool ------------------------------------------------
@each_call
def test_each_run_appends_its_outcome_and_events_off_appends_nothing(unit, script, args, normal):
    unit.answer(script, args, asterisk=idle("PJSIP/alena"))
    with open(unit.config.events.spool) as spool:
        (entry,) = spool.read().splitlines()
    at, call_id, name, queue, key, status = entry.split("\t")[:6]
    assert (call_id, name, queue, key) == ("", script.name, "", "79130751580") and abs(float(at) - time.time()) < 60
    assert status == {"vip_or_not": "normal", "sticky_route": normal.get("STICKY_STATUS"),
                      "delnum": "none"}[script.name]
    unit.configure("[log]\nevents = off\n")
    unit.answer(script, args, asterisk=idle("PJSIP/alena"))
    with open(unit.config.events.spool) as spool:
        assert len(spool.read().splitlines()) == 1


def test_a_spool_that_cannot_be_written_is_one_warning_and_the_call_goes_on(unit, tmp_path):
    unit.configure("[log]\nevents_spool = %s\n" % (tmp_path / "no-such-folder" / "events.log"))
    outcome, channel, log = unit.answer(vip_or_not.SCRIPT, [NUMBER])
    assert outcome == "ok" and channel.variables == {"QUEUE_PRIO": "5", "VIP": "0", "VIP_LABEL": ""}
    assert log == ["vip_or_not: cannot record the call's outcome: %s: No such file or directory ([log] events = off "
                   "stops recording)" % (tmp_path / "no-such-folder" / "events.log")]
    assert channel.warnings == ["vipsticky " + log[0]]
