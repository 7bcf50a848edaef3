"""Number keys: a caller ID or an address-book entry -> canonical digits, or None.

Pure functions, no I/O. The key is country code + national number, digits only,
so "+7 913 075-15-80", "8 (913) 075-15-80" and "9130751580" are one caller.
addressbook.py holds the same rules as an SQL function for the address-book triggers;
tests/test_numbers.py proves the two agree.
"""
from .config import NumberPlan
from .rules import DIGITS

# Digits, space, - ( ) . and one leading +; nothing else (letters, * #, quotes,
# control characters) can be part of a phone number a person typed.
NUMBER_CHARACTERS = DIGITS | frozenset(" ().-")
SURROUNDING_WHITESPACE = " \t\r\n\f\v"
MAX_DIGITS = 15  # E.164
INTERNATIONAL_MIN_DIGITS = 8
UNPREFIXED_INTERNATIONAL_MIN_DIGITS = 11


def number_key(raw, plan: NumberPlan):
    """The canonical key of a caller ID or stored phone number, or None when it is
    not a usable external number (anonymous, internal extension, garbage)."""
    if not isinstance(raw, str):
        return None
    text = raw.strip(SURROUNDING_WHITESPACE)
    if len(text) > 64 or not NUMBER_CHARACTERS.issuperset(text[1:] if text.startswith("+") else text):
        return None
    digits = "".join(ch for ch in text if ch in DIGITS)
    count = len(digits)
    if text.startswith("+"):
        return _international(digits)
    for prefix in plan.international_prefixes:
        if digits.startswith(prefix):
            return _international(digits[len(prefix):])
    national = plan.national_length
    for prefix in (plan.trunk_prefix, plan.country_code):
        if prefix and count == len(prefix) + national and digits.startswith(prefix):
            return plan.country_code + digits[len(prefix):]
    if count == national:
        return plan.country_code + digits
    if count < national:
        area = plan.area_code
        if area and count >= national - len(area):
            completed = area[:national - count] + digits
            if completed.startswith(area):
                return plan.country_code + completed
        return None
    if UNPREFIXED_INTERNATIONAL_MIN_DIGITS <= count <= MAX_DIGITS:
        return digits
    return None


def _international(digits):
    if INTERNATIONAL_MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        return digits
    return None
