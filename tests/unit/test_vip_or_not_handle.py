"""vip_or_not.handle() in process: VIP from the table, not VIP, unusable numbers, priorities, fail-open."""
import pytest

from agi_scripts import vip_or_not
from agi_scripts.database import DatabaseError

SCRIPT = vip_or_not.SCRIPT
NOT_VIP = {"QUEUE_PRIO": "5", "VIP": "0", "VIP_LABEL": ""}
UNUSABLE = ["anonymous", "restricted", "", "201", "9130751580' OR '1'='1", "*9130751580", "913075158O",
            "1234567890123456", "5123456"]


def vip(priority, label):
    return {"QUEUE_PRIO": str(priority), "VIP": "1", "VIP_LABEL": label}


@pytest.fixture
def vips(unit):
    unit.add_vip("79130751580", 30, 'Ivan "Vanya" Petrov')
    unit.add_vip("73843123456", 12, "Office")
    return unit


@pytest.mark.parametrize("number, expected", [
    ("+79130751580", vip(30, 'Ivan "Vanya" Petrov')),
    ("8 (913) 075-15-80", vip(30, 'Ivan "Vanya" Petrov')),
    ("9130751580", vip(30, 'Ivan "Vanya" Petrov')),
    ("12-34-56", vip(12, "Office")),
    ("3843123456", vip(12, "Office")),
    ("89130751581", NOT_VIP),
    ("+380441234567", NOT_VIP),
])
def test_vip_from_the_table_or_not(vips, number, expected):
    channel = vips.handle(SCRIPT, [number])
    assert channel.variables == expected
    assert [command[1] for command in channel.commands] == ["QUEUE_PRIO", "VIP", "VIP_LABEL"]


@pytest.mark.parametrize("args, caller_id, expected", [
    ([], "+79130751580", vip(30, 'Ivan "Vanya" Petrov')),
    ([], "89130751589", NOT_VIP),
    (["89130751589"], "+79130751580", NOT_VIP),
    (["9130751580"], "anonymous", vip(30, 'Ivan "Vanya" Petrov')),
], ids=["caller-id", "caller-id-not-vip", "argument-wins", "argument-wins-over-withheld"])
def test_number_defaults_to_the_caller_id(vips, args, caller_id, expected):
    assert vips.handle(SCRIPT, args, caller_id=caller_id).variables == expected


@pytest.mark.parametrize("number", UNUSABLE)
def test_an_unusable_number_is_not_vip_and_never_reaches_the_database(unit, broken_database, number):
    unit.database = broken_database
    assert unit.handle(SCRIPT, [number]).variables == NOT_VIP


def test_a_usable_number_does_reach_the_database(unit, broken_database):
    unit.database = broken_database
    with pytest.raises(DatabaseError):
        unit.handle(SCRIPT, ["89130751580"])


def test_custom_normal_priority(vips):
    vips.configure("[vip]\npriority = 42\nnormal_priority = -3\n")
    assert vips.handle(SCRIPT, ["89130751581"]).variables == {"QUEUE_PRIO": "-3", "VIP": "0", "VIP_LABEL": ""}
    assert vips.handle(SCRIPT, ["anonymous"]).variables["QUEUE_PRIO"] == "-3"
    assert vips.handle(SCRIPT, ["123456"]).variables == vip(12, "Office")  # a stored priority stays


@pytest.mark.parametrize("extra, normal", [("", "5"), ("[vip]\nnormal_priority = 7\n", "7")],
                         ids=["default", "custom-normal-priority"])
def test_fails_open_with_the_normal_priority(unit, broken_database, extra, normal):
    unit.configure(extra)
    outcome, channel, log = unit.answer(SCRIPT, ["89130751580"], database=broken_database)
    assert outcome == "failed"
    assert channel.variables == {"QUEUE_PRIO": normal, "VIP": "0", "VIP_LABEL": ""}
    assert len(channel.warnings) == 1 and len(log) == 1


def test_more_arguments_than_vip_or_not_takes_are_refused(vips):
    outcome, channel, log = vips.answer(SCRIPT, ["89130751580", "Ivan"])
    assert (outcome, channel.variables) == ("failed", NOT_VIP)
    assert len(channel.warnings) == 1 and len(log) == 1
