"""delnum.handle() in process: every DELNUM_STATUS, queue-scoped and global forget, the sound."""
import pytest

from agi_scripts import delnum
from agi_scripts.asterisk_standin import Asterisk
from agi_scripts.call import BadArgument
from utils import FAIL_OPEN

SCRIPT = delnum.SCRIPT
NUMBER, KEY = "89130751580", "79130751580"
OTHER_KEY = "380441234567"


@pytest.fixture
def three_scopes(unit):
    """The caller bound in q1, q2 and the global scope; someone else in q1."""
    for queue, agent in (("q1", "PJSIP/alena"), ("q2", "PJSIP/boris"), ("", "PJSIP/carol")):
        unit.bind(KEY, queue, agent)
    unit.bind(OTHER_KEY, "q1", "PJSIP/alena")
    return unit


def test_with_a_queue_deletes_that_scope_only(three_scopes):
    unit = three_scopes
    channel = unit.handle(SCRIPT, [NUMBER, "q1"])
    assert channel.variables == {"DELNUM_STATUS": "deleted"}
    assert channel.played == ["beep"]
    assert unit.scopes(KEY) == ["", "q2"]
    assert unit.scopes(OTHER_KEY) == ["q1"]
    assert unit.handle(SCRIPT, [NUMBER, "q1"]).variables == {"DELNUM_STATUS": "none"}
    assert unit.scopes(KEY) == ["", "q2"]


@pytest.mark.parametrize("args", [[NUMBER], [NUMBER, ""], []], ids=["number", "empty-queue", "caller-id"])
def test_without_a_queue_deletes_every_scope(three_scopes, args):
    unit = three_scopes
    channel = unit.handle(SCRIPT, args, caller_id="+7 913 075 15 80")
    assert channel.variables == {"DELNUM_STATUS": "deleted"}
    assert unit.scopes(KEY) == []
    assert unit.scopes(OTHER_KEY) == ["q1"]


def test_none_when_the_caller_has_no_binding(unit):
    unit.bind(OTHER_KEY, "", "PJSIP/alena")
    assert unit.handle(SCRIPT, [NUMBER]).variables == {"DELNUM_STATUS": "none"}
    assert unit.scopes(OTHER_KEY) == [""]


@pytest.mark.parametrize("number", ["anonymous", "", "201", "garbage", "*9130751580"])
def test_no_number_touches_nothing_and_plays_nothing(three_scopes, number):
    unit = three_scopes
    before = unit.bindings()
    channel = unit.handle(SCRIPT, [number])
    assert channel.variables == {"DELNUM_STATUS": "no-number"}
    assert channel.commands == [("set", "DELNUM_STATUS", "no-number")]
    assert unit.bindings() == before


@pytest.mark.parametrize("queue", ["a,b", "${EVIL}", "q 1"])
def test_bad_queue_raises_and_the_call_fails_open(three_scopes, queue):
    unit = three_scopes
    before = unit.bindings()
    with pytest.raises(BadArgument):
        unit.handle(SCRIPT, [NUMBER, queue])
    outcome, channel, _ = unit.answer(SCRIPT, [NUMBER, queue])
    assert (outcome, channel.variables) == ("failed", FAIL_OPEN["delnum"])
    assert unit.bindings() == before


def test_error_when_the_database_fails(unit, broken_database):
    outcome, channel, log = unit.answer(SCRIPT, [NUMBER], database=broken_database)
    assert (outcome, channel.variables, channel.played) == ("failed", {"DELNUM_STATUS": "error"}, [])
    assert len(log) == 1


def test_status_is_set_before_the_sound(three_scopes):
    channel = three_scopes.handle(SCRIPT, [NUMBER, "q2"])
    assert channel.commands == [("set", "DELNUM_STATUS", "deleted"), ("play", "beep")]


@pytest.mark.parametrize("extra, sounds, played", [
    ("", set(), []),  # the sound file is missing: the unbind still happened
    ("[sticky]\nunbind_sound = custom/ok\n", {"beep", "custom/ok"}, ["custom/ok"]),
], ids=["missing-sound", "custom-sound"])
def test_sound(three_scopes, extra, sounds, played):
    unit = three_scopes
    unit.configure(extra)
    channel = unit.handle(SCRIPT, [NUMBER], asterisk=Asterisk(sounds=sounds))
    assert channel.variables == {"DELNUM_STATUS": "deleted"}
    assert channel.played == played
    assert channel.commands[-1][0] == "play"  # it did try
    assert unit.scopes(KEY) == []


def test_no_sound_configured_plays_nothing(three_scopes):
    three_scopes.configure("[sticky]\nunbind_sound =\n")
    channel = three_scopes.handle(SCRIPT, [NUMBER])
    assert channel.commands == [("set", "DELNUM_STATUS", "deleted")]


def test_more_arguments_than_delnum_takes_are_refused(three_scopes):
    before = three_scopes.bindings()
    with pytest.raises(BadArgument):
        three_scopes.handle(SCRIPT, [NUMBER, "q1", "x"])
    assert three_scopes.bindings() == before
