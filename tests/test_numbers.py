"""Number keys: the rules of issue 2, and the SQL function agreeing with Python."""
import random

import pytest

from agi_scripts import addressbook
from agi_scripts.config import NumberPlan
from agi_scripts.number_keys import number_key
from utils import PLAN

MUST_HOLD = {
    "+79130751580": "79130751580",
    "89130751580": "79130751580",
    "79130751580": "79130751580",
    "9130751580": "79130751580",
    "8 (913) 075-15-80": "79130751580",
    "83843123456": "73843123456",
    "3843123456": "73843123456",
    "123456": "73843123456",
    "12-34-56": "73843123456",
    "3123456": "73843123456",
    "5123456": None,
    "+380441234567": "380441234567",
    "810380441234567": "380441234567",
    "00380441234567": "380441234567",
    "anonymous": None,
    "201": None,
    "9130751580' OR '1'='1": None,
}

MORE = {
    "": None, "   ": None, "unknown": None, "restricted": None, "Anonymous": None,
    " +7 913 075 15 80 ": "79130751580", "\t89130751580\r\n": "79130751580",
    "+7 (913) 075.15.80": "79130751580", "8-913-075-15-80": "79130751580",
    "9130751580#": None, "*9130751580": None, "913075158O": None, "+": None, "++79130751580": None,
    "7+9130751580": None, "+1234567": None, "+12345678": "12345678", "+1234567890123456": None,
    "8101234567": None,  # the international prefix rule comes first: 810 + 7 digits
    "0012345": None, "001234567": None, "0012345678": "12345678",
    "12345": None, "843123456": "73843123456", "43123456": "73843123456",
    "4412345678901": "4412345678901", "1234567890123456": None, "84951234567": "74951234567",
    "74951234567": "74951234567", "123456789012": "123456789012",
    "9130751580\x00": None, "9130751580\n1": None, "٩١٣٠٧٥١٥٨٠": None, "９１３０７５１５８０": None,
    "%913%": None, "913_075": None, "1" * 64: None, " " * 100 + "9130751580": "79130751580",
}


@pytest.mark.parametrize("raw,key", sorted(MUST_HOLD.items()))
def test_issue_examples(raw, key):
    assert number_key(raw, PLAN) == key


@pytest.mark.parametrize("raw,key", sorted(MORE.items()))
def test_more_rules(raw, key):
    assert number_key(raw, PLAN) == key


def test_other_plans():
    ukraine = NumberPlan(country_code="380", trunk_prefix="0", international_prefixes=("00",),
                         national_length=9, area_code="44")
    assert number_key("044 123 45 67", ukraine) == "380441234567"
    assert number_key("+380 44 123 45 67", ukraine) == "380441234567"
    assert number_key("1234567", ukraine) == "380441234567"
    no_area = NumberPlan(area_code="")
    assert number_key("123456", no_area) is None


def test_non_strings_are_not_numbers():
    assert number_key(None, PLAN) is None
    assert number_key(79130751580, PLAN) is None
    assert number_key(b"79130751580", PLAN) is None


def corpus(seed=20261129, size=3000):
    """Every example above plus generated numbers in the formats people type and junk."""
    rng = random.Random(seed)
    values = list(MUST_HOLD) + list(MORE)
    alphabet = "0123456789 ()-.+#*'\"%_aZ\t\r\n\x0b\x0c\x00é٣"
    for _ in range(size):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 18)))
        style = rng.randrange(7)
        if style == 0:
            values.append(digits)
        elif style == 1:
            values.append(rng.choice(["+", "8", "7", "00", "810", ""]) + digits)
        elif style == 2:
            cut = [digits[i:i + rng.randint(1, 3)] for i in range(0, len(digits), 3)]
            values.append(rng.choice([" ", "-", ".", ""]).join(cut))
        elif style == 3:
            values.append("8 (%s) %s-%s" % (digits[:3], digits[3:6], digits[6:]))
        elif style == 4:
            values.append(rng.choice([" ", "\t", "\r\n", ""]) + digits + rng.choice([" ", "\n", "\x0b", ""]))
        elif style == 5:
            values.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))))
        else:
            values.append(rng.choice(["9130751580", "3843123456", "123456", "3123456"])[: rng.randint(4, 10)])
    return values


def test_sql_function_agrees_with_python(mariadb):
    """The triggers compute keys in SQL: on the whole corpus the two must be equal."""
    database = mariadb.database()
    for statement in addressbook.statements(PLAN, mariadb.config.vip)[1:5]:  # function and procedure only
        database.run(statement)
    values = corpus()
    mismatches = [(raw, number_key(raw, PLAN), addressbook.sql_number_key(database, raw)) for raw in values
                  if number_key(raw, PLAN) != addressbook.sql_number_key(database, raw)]
    assert mismatches == []
    assert len(values) > 3000
    assert sum(number_key(raw, PLAN) is not None for raw in values) > 1000  # the corpus is not all junk
