"""Hostile input (issue 4, item 1): whatever a caller ID or an AGI argument holds, every
script answers with well-formed AGI commands, sets its fail-open variables, writes to the
tables only for a valid number (with a valid agent), and never lets an exception out.

Seeded and bounded (random.Random(SEED)), on SQLite and MariaDB:
  * bulk:       BULK (10,000) inputs per script and dialect through the very handlers
                (fastagi.answer_connection) over the AGI peer's protocol, in this process;
  * subprocess: the installed per-call scripts spawned exactly as Asterisk does,
                SUBPROCESS_SQLITE per script on SQLite and SUBPROCESS_MARIADB per script on
                MariaDB (a spawn costs ~60 ms; the big sample on one dialect keeps CI short);
  * FastAGI:    the real server (make_server) in a thread, FASTAGI calls per script and dialect;
  * CLI:        bad numbers, bad options and bad configs give one line on stderr and exit != 0.

Every expectation is computed independently of the scripts (from number_key,
valid_agent, valid_queue and a model of the bindings table), so a call is checked
for exactly the variables it must set, not only for "something was set".

Line feeds are the one exception: res_agi writes every agi_* value raw, so a value
holding a LF breaks the environment for any script; that case has its own
test below (test_bulk_line_feeds), marked as a known bug.
"""
import os
import random
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List, Optional, Tuple

import pytest

from agi_scripts import fastagi
from agi_scripts.asterisk_standin import Asterisk, Peer
from agi_scripts.number_keys import number_key
from agi_scripts.config import StickySettings
from agi_scripts.rules import agent_allowed, valid_agent, valid_queue
from agi_scripts.scripts import NAMES
from agi_scripts.sticky_route import BUSY_STATES
from utils import PLAN, FastAGIServer, assert_one_error_line, report_problems, vipsticky

SEED = 20240604
BULK = 10_000                # in-process inputs per script and dialect
SUBPROCESS_SQLITE = 500      # real per-call processes per script on SQLite ...
SUBPROCESS_MARIADB = 100     # ... and a smaller sample on MariaDB (CI time)
FASTAGI = 1_000              # calls per script and dialect through the FastAGI socket
LINE_FEEDS = 1_000           # inputs per script and dialect holding a LF (known bug)
WORKERS = 3                  # subprocess runs in parallel (2-core machine)
SCRIPTS = ("vip_or_not", "sticky_route", "delnum")
NORMAL_PRIORITY = "5"

# -- what the database holds before the hostile calls -------------------------------------
VIPS = {  # number key -> (priority, label): labels full of quoting trouble on purpose
    "79130751580": (30, 'Ivan "Vanya" Petrov \\ CEO'),
    "73843123456": (12, "Office'; DROP TABLE vip_numbers; --"),
    "4915112345678": (10, "Müller ☎ 100%_ `id` $(reboot)"),
}
SEEDED_BINDINGS = {  # (number key, queue) -> agent
    ("79130751580", ""): "PJSIP/alena",
    ("79130751580", "support"): "Local/alice@agents/n",
    ("73843123456", "sales"): "SIP/101",
    ("79031234567", "support"): "PJSIP/alena",
}
# What the simulated Asterisk answers to DEVICE_STATE / QUEUE_MEMBER_LIST / QUEUE_MEMBER.
DEVICES = {"PJSIP/alena": "NOT_INUSE", "Local/alice@agents/n": "NOT_INUSE", "SIP/101": "INUSE",
           "PJSIP/boris": "NOT_INUSE", "IAX2/x-y.z:5060": "RINGING"}
QUEUES = {"support": {"PJSIP/alena": False, "Local/alice@agents/n": True},
          "sales": {"SIP/101": False, "PJSIP/boris": False}}

# -- the hostile vocabulary ----------------------------------------------------------------
VALID_NUMBERS = [
    "89130751580", "+7 913 075-15-80", "8 (913) 075-15-80", "9130751580", "79130751580", "+79130751580",
    " 89130751580\t", "8.913.075.15.80", "123456", "3843123456", "8 3843 12-34-56", "+7 (3843) 12-34-56",
    "+49 151 12345678", "004915112345678", "810 49 151 12345678", "89031234567", "+1 (202) 555-0143",
    "+380 44 123 4567",
]
SQL = [
    "'", "''", '"', "';", "' OR '1'='1", "' OR 1=1 --", "1; DROP TABLE numbers_remember; --",
    "'); DELETE FROM vip_numbers; --", "/*", "*/", "/**/", "--", "#", "\\", "\\'", '\\"', "`",
    "' UNION SELECT number_key, priority, label FROM vip_numbers --", "0x41", "CHAR(39)", "NULL", "null",
    "' ESCAPE '\\", "\x1a", "\\0", "%s", "%(x)s", "?", ":1", "$1", "'||'", "; SELECT SLEEP(10); --",
    "'; UPDATE numbers_remember SET agent='PJSIP/evil'; --", "' AND (SELECT 1 FROM dual) --",
]
SHELL = [
    "$(reboot)", "`id`", "| cat /etc/passwd", "&& rm -rf /", "& whoami", "> /tmp/pwned", "< /etc/passwd",
    "$HOME", "${IFS}", "\\$(id)", ";ls", "|", "&", ">", "<", "*", "?", "~", "!", "$((1+1))", "2>&1",
]
AGI_TRICKS = [
    '" "', '"\\', "HANGUP", "200 result=1", "511 ", "510 Invalid", "agi_arg_1: x", "EXEC Dial PJSIP/evil",
    "${SHELL(id)}", "${DB_DELETE(x/y)}", "$[1+1]", "SET VARIABLE QUEUE_PRIO 99", '" 99', "(hangup)", "hangup",
    "result=-1", "${QUEUE_PRIO}", "${CALLERID(num)}", "),(",
]
WILDCARDS = ["%", "_", "%%", "__", "%_%", "%9130751580", "7913075158_", "%1580", "_9130751580", "7%", "*", "."]
CONTROL = ["\r", "\x00", "\t", "\x0b", "\x0c", "\x1b[31m", "\x7f", "\u2028", "\u2029", "\x85", "\ufeff",
           "\u202e", "\u200b", "\xa0", "\x1c", "\x1e", "\x08", "\x07"]
STAR_HASH = ["*", "#", "*#", "**72", "*89130751580", "89130751580#", "#31#89130751580", "*31#+79130751580",
             "8913*0751580", "+7 913 075-15-8#", "*67"]
NEAR = ["+", "00", "8", "+7", "7", "12345", "8913075158", "891307515800", "+7913075158012345", "1" * 16,
        "0000000000000", "+0", "810", "00" + "9" * 16, "8 (913) 075-15-80 ext 5", "+7 913 075 15 80 + 1",
        "８９１３０７５１５８０", "٨٩١٣٠٧٥١٥٨٠", "+7\u00a0913\u00a0075\u00a015\u00a080", "89130751580.", "anonymous",
        "Anonymous", "unknown", "restricted", "<unknown>", "sip:89130751580@evil.example", "tel:+79130751580",
        "0", "-1", "1e10", "89130751580\u0301"]
QUEUE_NAMES_VALID = ["support", "sales", "q%_;&*", "очередь", "a(b)", "Q-1.x"]
QUEUE_NAMES_HOSTILE = ["sup port", "a,b", "a|b", "${EVIL}", "q'", 'q"', "q\\", "[x]", "q\r", "q\t", "x" * 81,
                       "q\x00", "\x7f", "a{b}", "q\u2028", "support\x0b", "sales'; DROP TABLE x; --", "$"]
AGENTS_VALID = ["PJSIP/alena", "Local/alice@agents/n", "SIP/101", "PJSIP/boris", "IAX2/x-y.z:5060",
                "PJSIP/" + "a" * 100, "Local/%_@agents/n"]
AGENTS_HOSTILE = ["PJSIP/a&PJSIP/b", "PJSIP/a,b", "SIP/a|b", "PJSIP/${EVIL}", "PJSIP/a b", "PJSIP/", "/alena",
                  "PJSIP/a'--", "PJSIP/a\r", "1PJSIP/a", "P" * 33 + "/a", "PJSIP/" + "a" * 101, "PJSIP/ä",
                  "Local/x@y/n\x00)", "PJSIP/a\"", "PJSIP/a;DROP", "PJSIP/a)", "DAHDI/g1/${EXTEN}", "PJSIP/a\\",
                  "PJSIP/alena,20,tT", "Local/$(reboot)@x"]
ACTIONS_GARBAGE = [None, "", "LOOKUP", "Remember", " lookup", "lookup ", "delete", "forget", "lookup;remember",
                   "remember\x00", "look up", "lookup\r", "\x00", "lookup,remember"]
UNICODE_RANGES = [(0x20, 0x7e), (0xa0, 0x24f), (0x400, 0x4ff), (0x590, 0x6ff), (0x300, 0x36f), (0x2000, 0x206f),
                  (0x4e00, 0x4fff), (0xff00, 0xffef), (0x1f300, 0x1f6ff), (0xe000, 0xf8ff), (0xfff0, 0xfffd),
                  (0x10000, 0x10ffff)]


class Hostile:
    """Seeded hostile inputs. With line_feeds=False no value holds a LF (they go to
    test_bulk_line_feeds); every other byte and character does occur."""

    def __init__(self, seed: int, line_feeds: bool = False):
        self.random = random.Random(seed)
        self.line_feeds = line_feeds

    # -- single values ------------------------------------------------------------------------
    def valid_number(self) -> str:
        r = self.random
        if r.random() < 0.6:
            return r.choice(VALID_NUMBERS)
        digits = "9" + "".join(r.choice("0123456789") for _ in range(9))
        prefix = r.choice(["8", "+7", "7", "", "007", "8107"])
        groups = [digits[:3], digits[3:6], digits[6:8], digits[8:]]
        separator = r.choice(["", " ", "-", ".", " - "])
        text = separator.join(groups)
        if r.random() < 0.3:
            text = "(%s) %s" % (digits[:3], separator.join(groups[1:]))
        return prefix + (" " if prefix and r.random() < 0.5 else "") + text

    def unicode_text(self, length: int) -> str:
        r = self.random
        out = []
        for _ in range(length):
            low, high = r.choice(UNICODE_RANGES)
            out.append(chr(r.randint(low, high)))
        return "".join(out)

    def raw_bytes(self, length: int) -> str:
        return bytes(self.random.getrandbits(8) for _ in range(length)).decode("utf-8", "surrogateescape")

    def value(self) -> str:
        """One hostile value (sometimes a valid number, so both sides of every rule run)."""
        r = self.random
        kind = r.choices(
            ["valid", "bytes", "unicode", "sql", "shell", "agi", "wild", "control", "long", "starhash", "empty",
             "near", "mixed"],
            weights=[18, 8, 8, 10, 6, 5, 6, 8, 3, 5, 5, 8, 10])[0]
        if kind == "valid":
            value = self.valid_number()
        elif kind == "bytes":
            value = self.raw_bytes(r.choice([1, 2, 5, 11, 16, 40, 300]))
        elif kind == "unicode":
            value = self.unicode_text(r.choice([1, 3, 11, 30, 100]))
        elif kind == "sql":
            value = "".join(r.choice(SQL) for _ in range(r.randint(1, 3)))
        elif kind == "shell":
            value = "".join(r.choice(SHELL) for _ in range(r.randint(1, 3)))
        elif kind == "agi":
            value = r.choice(AGI_TRICKS)
        elif kind == "wild":
            value = r.choice(WILDCARDS)
        elif kind == "control":
            number = list(self.valid_number())
            for _ in range(r.randint(1, 3)):
                number.insert(r.randint(0, len(number)), r.choice(CONTROL))
            value = "".join(number)
        elif kind == "long":
            value = r.choice([
                lambda: "9" * 10_000,
                lambda: "A" * 10_000,
                lambda: "%" * 10_000,
                lambda: "'" * 10_000,
                lambda: "\\" * 10_000,
                lambda: '"' * 10_000,
                lambda: " " * 4_994 + "89130751580" + " " * 4_995,  # a valid number, padded
                lambda: self.unicode_text(10_000),
                lambda: self.raw_bytes(10_000),
                lambda: ("89130751580" * 910)[:10_000],
            ])()
        elif kind == "starhash":
            value = r.choice(STAR_HASH)
        elif kind == "empty":
            value = ""
        elif kind == "near":
            value = r.choice(NEAR)
        else:  # a valid number with hostile text around or inside it
            number = self.valid_number()
            fragment = r.choice(SQL + SHELL + AGI_TRICKS + WILDCARDS + CONTROL + STAR_HASH)
            where = r.randint(0, 2)
            if where == 0:
                value = number + fragment
            elif where == 1:
                value = fragment + number
            else:
                cut = r.randint(0, len(number))
                value = number[:cut] + fragment + number[cut:]
        return self.clean(value)

    def clean(self, value: Optional[str]) -> Optional[str]:
        return value if self.line_feeds or value is None else value.replace("\n", "\r")

    def number(self) -> str:
        return self.valid_number() if self.random.random() < 0.25 else self.value()

    def optional(self, bounds, valid, hostile) -> Optional[str]:
        """One roll against bounds (missing, empty, valid, hostile): None, "", one of
        valid, one of hostile, else any hostile value."""
        missing, empty, good, bad = bounds
        roll = self.random.random()
        if roll < missing:
            return None
        if roll < empty:
            return ""
        if roll < good:
            return self.random.choice(valid)
        if roll < bad:
            return self.clean(self.random.choice(hostile))
        return self.value()

    def queue(self) -> Optional[str]:
        return self.optional((0.25, 0.35, 0.6, 0.8), QUEUE_NAMES_VALID, QUEUE_NAMES_HOSTILE)

    def agent(self) -> Optional[str]:
        return self.optional((0.3, 0.4, 0.65, 0.85), AGENTS_VALID, AGENTS_HOSTILE)

    def action(self) -> Optional[str]:
        r = self.random
        roll = r.random()
        if roll < 0.4:
            return "lookup"
        if roll < 0.75:
            return "remember"
        if roll < 0.9:
            return self.clean(r.choice(ACTIONS_GARBAGE)) if r.random() < 0.7 else None
        return self.value()

    # -- whole calls ----------------------------------------------------------------------
    def case(self, script: str) -> "Case":
        r = self.random
        variables = {}
        if script == "vip_or_not":
            number = self.number()
            roll = r.random()
            if roll < 0.2:
                args, callerid = [], number                      # missing argument: caller ID used
            elif roll < 0.85:
                args, callerid = [number], number                # the same value in both places
            else:
                args, callerid = [number, self.value()], self.value()
        elif script == "sticky_route":
            number = self.number()
            args = _until_missing([self.action(), number, self.queue(), self.agent()])
            callerid = number if r.random() < 0.8 else self.value()
            roll = r.random()
            if roll < 0.35:
                variables["MEMBERINTERFACE"] = r.choice(AGENTS_VALID)
            elif roll < 0.6:
                variables["MEMBERINTERFACE"] = self.clean(r.choice(AGENTS_HOSTILE))
        else:
            number = self.number()
            args = _until_missing([number, self.queue()])
            callerid = number if r.random() < 0.8 else self.value()
        case = Case(script, args, callerid, variables)
        if self.line_feeds:
            self.add_line_feed(case)
        return case

    def add_line_feed(self, case: "Case") -> None:
        """Put a LF into one value that Asterisk writes into the AGI environment."""
        r = self.random
        slots = ["callerid"] + list(range(len(case.args)))
        slot = r.choice(slots)
        text = case.callerid if slot == "callerid" else case.args[slot]
        trick = r.choice(["end", "double", "middle", "inject"])
        if trick == "end":
            text = text + "\n"
        elif trick == "double":
            cut = r.randint(0, len(text))
            text = text[:cut] + "\n\n" + text[cut:]
        elif trick == "middle":
            cut = r.randint(0, len(text))
            text = text[:cut] + "\r\n" + text[cut:]
        else:
            text = text + "\n" + r.choice(["agi_arg_1: remember", "agi_network_script: delnum",
                                           "agi_callerid: 89130751580", "", "200 result=1"])
        if slot == "callerid":
            case.callerid = text
        else:
            case.args[slot] = text


def cases_for(script: str, seed: int, count: int) -> List["Case"]:
    """count hostile calls of script; before about a third of the delnum calls, a remember
    call for the same number and queue, so that delnum has bindings to delete (those
    extra calls are checked too, but not counted)."""
    generator = Hostile(seed)
    helper = random.Random(seed + 1_000_000)
    cases = []
    for _ in range(count):
        case = generator.case(script)
        if script == "delnum" and helper.random() < 0.35:
            number = case.args[0] if case.args else case.callerid
            queue = case.args[1] if len(case.args) > 1 and case.args[1] else helper.choice(["", "support", "sales"])
            cases.append(Case("sticky_route", ["remember", number, queue, helper.choice(AGENTS_VALID)],
                              case.callerid))
        cases.append(case)
    return cases


def _until_missing(values):
    """AGI arguments up to the first missing one (None)."""
    args = []
    for value in values:
        if value is None:
            break
        args.append(value)
    return args


@dataclass
class Case:
    script: str
    args: List[str]
    callerid: str
    variables: Dict[str, str] = field(default_factory=dict)  # channel variables before the call

    def asterisk(self) -> Asterisk:
        return Asterisk(variables=dict(self.variables), devices=dict(DEVICES),
                        queues={name: dict(members) for name, members in QUEUES.items()})

    def describe(self) -> str:
        return "%s args=%s callerid=%s vars=%s" % (self.script, _short(self.args), _short(self.callerid),
                                                   _short(self.variables))


def raw_number(case: Case) -> str:
    """The value a script takes as the caller's number: its number argument, else the caller ID."""
    position = 1 if case.script == "sticky_route" else 0
    return case.args[position] if len(case.args) > position else case.callerid


def _short(value, limit=160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...(%d chars)" % len(text)


# -- what the script sees of a value -------------------------------------------------------
def through_environment(value: str) -> str:
    """A value as pyst2 reads it back from an agi_* line: the peer drops NUL (as a C string
    would), invalid UTF-8 becomes U+FFFD, and pyst2 strips each line."""
    value = value.replace("\x00", "")
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace").strip()


def through_argv(value: str) -> str:
    """A value as a spawned script finds it in sys.argv (no NUL in argv)."""
    return os.fsdecode(os.fsencode(value.replace("\x00", "")))


def through_reply(value: str) -> str:
    """A channel variable as the script reads it from '200 result=1 (value)'."""
    return value.replace("\x00", "").encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


# -- a model of the bindings table ----------------------------------------------------------
class QueueFold:
    """Queue names as the database compares them: SQLite byte for byte, MariaDB by the
    column's collation (case- and accent-insensitive), asked of MariaDB itself."""

    def __init__(self, setup):
        self.setup = setup
        self.cache = {}
        self.connection = None
        if setup.dialect == "mariadb":
            self.connection = setup.connection()
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT collation_name FROM information_schema.columns WHERE table_schema = DATABASE()"
                               " AND table_name = 'numbers_remember' AND column_name = 'queue'")
                self.collation = cursor.fetchone()[0]

    def __call__(self, queue: str):
        if self.connection is None:
            return queue
        if queue not in self.cache:
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT WEIGHT_STRING(CONVERT(%%s USING utf8mb4) COLLATE %s)" % self.collation,
                               (queue,))
                self.cache[queue] = cursor.fetchone()[0]
        return self.cache[queue]

    def close(self):
        if self.connection is not None:
            self.connection.close()


class Model:
    """The bindings the table must hold after the calls made so far (sequential runs)."""

    def __init__(self, fold):
        self.fold = fold
        self.rows: Dict[Tuple[str, object], Tuple[str, str]] = {}  # (key, folded queue) -> (queue, agent)
        for (key, queue), agent in SEEDED_BINDINGS.items():
            self.remember(key, queue, agent)

    def lookup(self, key, queue) -> Optional[str]:
        """The queue's own binding, else the global scope's (every binding here is live)."""
        row = self.rows.get((key, self.fold(queue))) or self.rows.get((key, self.fold("")))
        return row[1] if row else None

    def remember(self, key, queue, agent):
        slot = (key, self.fold(queue))
        stored_queue = self.rows[slot][0] if slot in self.rows else queue  # an upsert keeps the first spelling
        self.rows[slot] = (stored_queue, agent)

    def forget(self, key, queue) -> bool:
        if queue is None:
            slots = [slot for slot in self.rows if slot[0] == key]
        else:
            slots = [slot for slot in [(key, self.fold(queue))] if slot in self.rows]
        for slot in slots:
            del self.rows[slot]
        return bool(slots)

    def table(self):
        return sorted((key, queue, agent) for (key, _), (queue, agent) in self.rows.items())


class LooseModel:
    """For calls that run concurrently: which bindings may exist at all."""

    def __init__(self):
        self.possible = {slot: {agent} for slot, agent in SEEDED_BINDINGS.items()}

    def allow(self, key, queue, agent):
        self.possible.setdefault((key, queue), set()).add(agent)


@dataclass
class Expected:
    result: str                              # ok | failed (as answer() returns it)
    variables: Dict[str, FrozenSet[str]]     # name -> allowed values; exactly these names are set
    verbs: Optional[List[str]] = None        # first word of each command, when known exactly
    warnings: Optional[int] = None           # WARNINGs (EXEC Log) when not one per failure

    @property
    def warning_count(self) -> int:
        return self.warnings if self.warnings is not None else (1 if self.result == "failed" else 0)


AGENT_PATTERNS = StickySettings().agents  # the default [sticky] agents
MOST_ARGUMENTS = {"vip_or_not": 1, "delnum": 2, "lookup": 3, "remember": 4}  # more: the call fails open


def one(value) -> FrozenSet[str]:
    return frozenset([str(value)])


def available(asterisk: Asterisk, agent: str, queue: str) -> bool:
    """Whether the agent can take the call now, as sticky_route must decide."""
    if asterisk.devices.get(agent, "INVALID").upper() in BUSY_STATES:
        return False
    if queue:
        members = asterisk.queues.get(queue, {})
        return agent in members and not members[agent]
    return True


def expect(case: Case, spawned: bool, model=None, loose: Optional[LooseModel] = None) -> Expected:
    """What the call must do. `spawned`: arguments arrive in argv (else in the environment).
    With `model` the bindings are known exactly (and updated); with `loose` they are not."""
    seen = through_argv if spawned else through_environment
    args = [seen(arg) for arg in case.args]
    callerid = through_environment(case.callerid)
    asterisk = case.asterisk()
    failed_sticky = Expected("failed", {"STICKY_AGENT": one(""), "STICKY_STATUS": one("error")},
                             ["EXEC", "SET", "SET"])
    number = args[0] if args and args[0] else callerid  # an empty NUMBER is the caller ID

    if case.script == "vip_or_not":
        if len(args) > MOST_ARGUMENTS["vip_or_not"]:
            return Expected("failed", {"QUEUE_PRIO": one(NORMAL_PRIORITY), "VIP": one("0"), "VIP_LABEL": one("")},
                            ["EXEC", "SET", "SET", "SET"])
        key = number_key(number, PLAN)
        if key in VIPS:
            priority, label = VIPS[key]
            values = {"QUEUE_PRIO": one(priority), "VIP": one("1"), "VIP_LABEL": one(label)}
        else:
            values = {"QUEUE_PRIO": one(NORMAL_PRIORITY), "VIP": one("0"), "VIP_LABEL": one("")}
        return Expected("ok", values, ["SET", "SET", "SET"])

    if case.script == "delnum":
        queue = args[1] if len(args) > 1 and args[1] else None
        if len(args) > MOST_ARGUMENTS["delnum"] or (queue is not None and not valid_queue(queue)):
            return Expected("failed", {"DELNUM_STATUS": one("error")}, ["EXEC", "SET"])
        key = number_key(number, PLAN)
        if key is None:
            return Expected("ok", {"DELNUM_STATUS": one("no-number")}, ["SET"])
        if queue is not None and has_surrogate(queue):
            return Expected("failed", {"DELNUM_STATUS": one("error")}, ["EXEC", "SET"])
        if model is not None:
            status = one("deleted" if model.forget(key, queue) else "none")
        else:
            status = frozenset(["deleted", "none"])
        return Expected("ok", {"DELNUM_STATUS": status}, ["SET", "STREAM"])

    # sticky_route
    action = args[0] if args else ""
    rest = args[1:]
    if action not in ("lookup", "remember") or len(args) > MOST_ARGUMENTS[action]:
        return failed_sticky
    queue = rest[1] if len(rest) > 1 else ""
    if queue and not valid_queue(queue):
        return failed_sticky
    key = number_key(rest[0] if rest and rest[0] else callerid, PLAN)
    if action == "lookup":
        timeout = one(20)
        # A queue is asked whether it exists (QUEUE_EXISTS); one that does not is a WARNING.
        # One GET asks that and, for a bound agent, the device state and the members; a member
        # is then asked whether they are paused.
        exists = ["GET"] + ([] if queue in asterisk.queues else ["EXEC"]) if queue else []
        missing = exists[1:]
        warned = len(missing)
        if key is None:
            return Expected("ok", {"STICKY_DIAL_TIMEOUT": timeout, "STICKY_AGENT": one(""),
                                   "STICKY_STATUS": one("no-number")}, ["SET"] + exists + ["SET", "SET"], warned)
        if has_surrogate(queue):  # the database lookup fails before Asterisk is asked
            return Expected("failed", {"STICKY_DIAL_TIMEOUT": timeout, "STICKY_AGENT": one(""),
                                       "STICKY_STATUS": one("error")}, ["SET", "EXEC", "SET", "SET"], 1)
        if model is not None:
            agent = model.lookup(key, queue)
            if agent is None:
                return Expected("ok", {"STICKY_DIAL_TIMEOUT": timeout, "STICKY_AGENT": one(""),
                                       "STICKY_STATUS": one("none")}, ["SET"] + exists + ["SET", "SET"], warned)
            allowed = agent_allowed(agent, AGENT_PATTERNS)
            free = available(asterisk, agent, queue) if allowed else False
            member = allowed and agent in asterisk.queues.get(queue, {})  # then paused is asked too
            asked = ["GET"] * ((1 if queue or allowed else 0) + (1 if queue and member else 0))
            return Expected("ok", {"STICKY_DIAL_TIMEOUT": timeout, "STICKY_AGENT": one(agent if free else ""),
                                   "STICKY_STATUS": one("found" if free else "unavailable")},
                            ["SET"] + asked + missing + ["SET", "SET"], warned)
        possible = loose.possible.get((key, queue), set()) | loose.possible.get((key, ""), set())
        agents = {""} | {agent for agent in possible
                         if agent_allowed(agent, AGENT_PATTERNS) and available(asterisk, agent, queue)}
        return Expected("ok", {"STICKY_DIAL_TIMEOUT": timeout, "STICKY_AGENT": frozenset(agents),
                               "STICKY_STATUS": frozenset(["none", "unavailable", "found"])}, warnings=warned)
    # remember
    if key is None:
        return Expected("ok", {"STICKY_STATUS": one("no-number")}, ["SET"])
    verbs = []
    if len(rest) > 2 and rest[2]:
        agent = rest[2]
    else:
        agent = through_reply(asterisk.variables.get("MEMBERINTERFACE", ""))
        verbs.append("GET")
    if not agent_allowed(agent, AGENT_PATTERNS):  # one WARNING says why (no member interface, or the patterns)
        return Expected("ok", {"STICKY_STATUS": one("bad-agent")}, verbs + ["SET", "EXEC"], 1)
    if has_surrogate(queue):
        return Expected("failed", {"STICKY_AGENT": one(""), "STICKY_STATUS": one("error")},
                        verbs + ["EXEC", "SET", "SET"])
    if model is not None:
        model.remember(key, queue, agent)
    if loose is not None:
        loose.allow(key, queue, agent)
    return Expected("ok", {"STICKY_STATUS": one("stored")}, verbs + ["SET"])


def problems_of(call, expected: Expected, result=None) -> List[str]:
    """Everything wrong with one call (empty when it did exactly what it must)."""
    found = []
    if call.malformed:
        found.append("malformed commands %s" % _short(call.malformed))
    for command in call.commands:
        if "\r" in command or "\n" in command or "\x00" in command:
            found.append("a command holds a line break or NUL: %s" % _short(command))
    if set(call.variables) != set(expected.variables):
        found.append("set %s, expected exactly %s" % (sorted(call.variables), sorted(expected.variables)))
    for name, allowed in expected.variables.items():
        if name in call.variables and call.variables[name] not in allowed:
            found.append("%s=%s, expected one of %s" % (name, _short(call.variables[name]), _short(sorted(allowed))))
    if call.variables.get("STICKY_STATUS") == "found" and not call.variables.get("STICKY_AGENT"):
        found.append("STICKY_STATUS=found without an agent")
    if call.variables.get("STICKY_AGENT") and call.variables.get("STICKY_STATUS") != "found":
        found.append("STICKY_AGENT set although STICKY_STATUS=%s" % call.variables.get("STICKY_STATUS"))
    verbs = [command.split(" ", 1)[0].upper() for command in call.commands]
    if expected.verbs is not None and verbs != expected.verbs:
        found.append("commands %s, expected %s" % (_short(call.commands, 400), expected.verbs))
    sets = sum(1 for verb in verbs if verb == "SET")
    if sets != len(call.variables):
        found.append("%d SET VARIABLE for %d variables: %s" % (sets, len(call.variables), _short(call.commands, 400)))
    if verbs.count("EXEC") != expected.warning_count or call.verbose:
        found.append("WARNINGs %s (VERBOSE lines %s) for a call that should be %s"
                     % (_short(call.warnings), _short(call.verbose), expected.result))
    if result is not None and result != expected.result:
        found.append("answer() returned %r, expected %r" % (result, expected.result))
    if call.exit_code != 0:
        found.append("exit code %r" % call.exit_code)
    if call.timed_out:
        found.append("timed out")
    if call.stderr:
        found.append("stderr: %s" % _short(call.stderr, 400))
    return found


# -- the database, before and after --------------------------------------------------------
def seed(setup) -> None:
    database = setup.database()
    for key, (priority, label) in VIPS.items():
        database.vip_add(key, priority, label)
    for (key, queue), agent in SEEDED_BINDINGS.items():
        database.remember(key, queue, agent, 86400)
    database.close()


def table_rows(setup):
    """(vip_numbers rows, numbers_remember rows as (number, queue, agent, expires_at), the database's now)."""
    vips, bindings, now = setup.query("SELECT number_key, priority, label FROM vip_numbers",
                                      "SELECT number, queue, agent, expires_at FROM numbers_remember")
    return (sorted((row[0], int(row[1]), row[2]) for row in vips),
            sorted((row[0], row[1], row[2], int(row[3])) for row in bindings), now)


def check_tables(setup, model: Optional[Model] = None, loose: Optional[LooseModel] = None) -> None:
    vips, bindings, now = table_rows(setup)
    assert vips == sorted((key, priority, label) for key, (priority, label) in VIPS.items())
    for number, queue, agent, expires_at in bindings:
        assert number_key(number, PLAN) == number, "a row for something that is not a number key: %r" % number
        assert agent_allowed(agent, AGENT_PATTERNS), "a row with an agent outside the patterns: %r" % agent
        assert queue == "" or valid_queue(queue), "a row with an unusable queue: %r" % queue
        assert now < expires_at <= now + 86400, "a binding expiring in %r s" % (expires_at - now)
    rows = sorted((number, queue, agent) for number, queue, agent, _ in bindings)
    if model is not None:
        assert rows == model.table()
    if loose is not None:
        for number, queue, agent in rows:
            assert agent in loose.possible.get((number, queue), ()), (number, queue, agent)


def report(problems: List[str], total: int) -> None:
    report_problems(problems, total)


# -- in-process bulk -----------------------------------------------------------------------
class Handlers:
    """fastagi.answer_connection over a socket pair, as Peer.call_handler drives it."""

    def __init__(self, setup):
        self.config = setup.config
        self.pool = fastagi.DatabasePool(self.config.database, 2)
        self.log: List[str] = []
        self.outcomes: List[object] = []

    def answer_call(self, rfile, wfile):
        try:
            self.outcomes.append(fastagi.answer_connection(rfile, wfile, self.config, self.pool, self.log.append))
        except BaseException as error:  # must never happen: recorded, and the test fails on it
            self.outcomes.append("exception: %s" % "".join(traceback.format_exception_only(type(error), error)))

    def call(self, case: Case):
        before_log, before_outcomes = len(self.log), len(self.outcomes)
        call = Peer(case.asterisk()).call_handler(case.script, self.answer_call, list(case.args),
                                                  callerid=case.callerid)
        outcome = self.outcomes[before_outcomes] if len(self.outcomes) > before_outcomes else "no outcome"
        return call, outcome, self.log[before_log:]

    def close(self):
        self.pool.close()


def call_once(setup, case: Case):
    """One call through the handlers: (call, answer()'s outcome, log lines)."""
    with closing(Handlers(setup)) as handlers:
        return handlers.call(case)


def check_log(lines: List[str], expected: Expected) -> List[str]:
    found = []
    if len(lines) != expected.warning_count:
        found.append("log lines %s for a call that should be %s with %d WARNING(s)"
                     % (_short(lines), expected.result, expected.warning_count))
    for line in lines:
        if "\n" in line or "\r" in line or len(line) > 600:
            found.append("log line not one bounded line: %s" % _short(line))
    return found


def run_in_process(setup, cases: List[Case]) -> Tuple[List[str], Model]:
    handlers = Handlers(setup)
    fold = QueueFold(setup)
    model = Model(fold)
    problems = []
    try:
        for index, case in enumerate(cases):
            expected = expect(case, spawned=False, model=model)
            call, outcome, lines = handlers.call(case)
            found = problems_of(call, expected, outcome) + check_log(lines, expected)
            if found:
                problems.append("#%d %s: %s" % (index, case.describe(), "; ".join(found)))
    finally:
        handlers.close()
        fold.close()
    return problems, model


@pytest.mark.parametrize("script", SCRIPTS)
def test_bulk_hostile_inputs(setup, script):
    """BULK hostile inputs through the handlers in this process, every one checked
    for its exact variables and commands, and the tables equal to the model at the end."""
    seed(setup)
    cases = cases_for(script, SEED + SCRIPTS.index(script), BULK)
    own = [case for case in cases if case.script == script]
    assert len(own) >= 10_000
    # Both sides of "no table changed except by a valid number" occur in the sample.
    valid = sum(1 for case in own if number_key(through_environment(raw_number(case)), PLAN))
    assert 0.15 * BULK < valid < 0.7 * BULK, valid
    started = time.monotonic()
    problems, model = run_in_process(setup, cases)
    elapsed = time.monotonic() - started
    report(problems, len(cases))
    check_tables(setup, model=model)
    print("%s on %s: %d in-process calls (%d of them %s) in %.1f s"
          % (script, setup.dialect, len(cases), len(own), script, elapsed))


def test_bulk_sample_reaches_every_outcome(setup):
    """The generator is not lopsided: across the bulk every status of every script occurs
    (so the checks above really ran on found, stored, deleted, bad-agent, error ...)."""
    seen = set()
    fold = QueueFold(setup)
    for script in SCRIPTS:
        model = Model(fold)  # each bulk test starts from the seeded tables
        for case in cases_for(script, SEED + SCRIPTS.index(script), BULK):
            expected = expect(case, spawned=False, model=model)
            if case.script != script:
                continue
            for name, values in expected.variables.items():
                if name in ("VIP", "STICKY_STATUS", "DELNUM_STATUS"):
                    seen.update("%s=%s" % (name, value) for value in values)
    fold.close()
    assert seen >= {"VIP=0", "VIP=1", "STICKY_STATUS=found", "STICKY_STATUS=none", "STICKY_STATUS=unavailable",
                    "STICKY_STATUS=no-number", "STICKY_STATUS=error", "STICKY_STATUS=stored",
                    "STICKY_STATUS=bad-agent", "DELNUM_STATUS=deleted", "DELNUM_STATUS=none",
                    "DELNUM_STATUS=no-number", "DELNUM_STATUS=error"}, seen


@pytest.mark.parametrize("script", SCRIPTS)
def test_bulk_line_feeds(setup, script):
    """LINE_FEEDS inputs per script with a LF somewhere in a caller ID or argument:
    the same checks as the bulk (what the handler can see of its arguments is what
    precedes the LF in the environment, so only the invariants are checked here)."""
    seed(setup)
    generator = Hostile(SEED + 100 + SCRIPTS.index(script), line_feeds=True)
    handlers = Handlers(setup)
    problems = []
    try:
        for index in range(LINE_FEEDS):
            case = generator.case(script)
            call, outcome, lines = handlers.call(case)
            found = [] if outcome in ("ok", "failed") else ["answer() returned %r" % (outcome,)]
            if call.malformed:
                found.append("malformed %s" % _short(call.malformed))
            names = {"vip_or_not": {"QUEUE_PRIO", "VIP", "VIP_LABEL"},
                     "sticky_route": {"STICKY_STATUS"}, "delnum": {"DELNUM_STATUS"}}[script]
            if not names <= set(call.variables):
                found.append("fail-open variables missing: set only %s" % sorted(call.variables))
            if script == "vip_or_not" and call.variables.get("VIP") not in ("0", "1"):
                found.append("VIP=%r" % call.variables.get("VIP"))
            if found:
                problems.append("#%d %s: %s" % (index, case.describe(), "; ".join(found)))
    finally:
        handlers.close()
    check_tables(setup)
    report(problems, LINE_FEEDS)


def test_fastagi_argument_cannot_switch_script(setup):
    seed(setup)
    call, outcome, _ = call_once(setup, Case("vip_or_not", ["89130751580\nagi_network_script: delnum"], "89130751580"))
    _, bindings, _ = table_rows(setup)
    assert [row for row in bindings if row[0] == "79130751580"], "vip_or_not deleted the caller's bindings"
    assert "DELNUM_STATUS" not in call.variables
    assert call.variables.get("QUEUE_PRIO") in ("30", NORMAL_PRIORITY)


def test_member_interface_named_hangup(setup):
    call, outcome, _ = call_once(setup, Case("sticky_route", ["remember", "89130751580", "support"], "",
                                             {"MEMBERINTERFACE": "hangup"}))
    assert call.variables == {"STICKY_STATUS": "bad-agent"}
    assert outcome == "ok"


@pytest.mark.parametrize("dialect", ["sqlite", "mariadb"])
def test_longest_valid_agent_is_stored(make_setup, dialect):
    """An agent interface is at most 120 characters: what the agent column holds."""
    setup = make_setup(dialect, "[sticky]\nagents = %s/*\n" % ("A" * 32))  # the longest technology name
    agent = "A" * 32 + "/" + "b" * 87
    assert valid_agent(agent) and not valid_agent(agent + "b")
    call, outcome, _ = call_once(setup, Case("sticky_route", ["remember", "89130751580", "", agent], ""))
    assert call.variables == {"STICKY_STATUS": "stored"}
    assert [row[2] for row in table_rows(setup)[1]] == [agent]


# -- real per-call processes ---------------------------------------------------------------
def test_subprocess_hostile_inputs_sqlite(sqlite):
    run_subprocesses(sqlite, SUBPROCESS_SQLITE)


def test_subprocess_hostile_inputs_mariadb(mariadb):
    run_subprocesses(mariadb, SUBPROCESS_MARIADB)


def run_subprocesses(setup, per_script: int) -> None:
    """per_script hostile inputs for each script, each a real process spawned as Asterisk
    spawns it (Setup.run), WORKERS at a time. They run concurrently, so bindings are
    checked against what may exist (LooseModel) instead of one exact sequence."""
    seed(setup)
    loose = LooseModel()
    cases = []
    for script in SCRIPTS:
        cases.extend(cases_for(script, SEED + 10 + SCRIPTS.index(script), per_script))
    # Expectations that do not depend on the order; remember's possible rows first.
    for case in cases:
        if case.script == "sticky_route":
            expect(case, spawned=True, loose=loose)
    expectations = [expect(case, spawned=True, loose=loose) for case in cases]

    def run(case):
        return setup.run(case.script, case.args, asterisk=case.asterisk(), callerid=case.callerid, timeout=20)

    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        calls = list(pool.map(run, cases))
    elapsed = time.monotonic() - started
    problems = []
    for index, (case, expected, call) in enumerate(zip(cases, expectations, calls)):
        found = problems_of(call, expected)
        if found:
            problems.append("#%d %s: %s" % (index, case.describe(), "; ".join(found)))
    report(problems, len(cases))
    check_tables(setup, loose=loose)
    print("%s: %d subprocess calls in %.1f s" % (setup.dialect, len(cases), elapsed))


# -- the FastAGI server ----------------------------------------------------------------------
def call_case(server: FastAGIServer, case: Case, script: Optional[str] = None):
    """case through the FastAGI server (under another script name, if given)."""
    return server.call(case.script if script is None else script, case.args, asterisk=case.asterisk(),
                       callerid=case.callerid, timeout=20)


HOSTILE_SCRIPT_NAMES = ["", "VIP_OR_NOT", "vip_or_not.py", "../delnum", "delnum;", "sticky_route\x00x",
                        "x'; DROP TABLE vip_numbers; --", "%", "_", "a" * 10_000, "$(reboot)", "vip or not",
                        "agi_network_script", "\r", "\x00", "delnum/../../etc/passwd", "sticky-route", "*"]


def test_fastagi_hostile_inputs(setup):
    """FASTAGI hostile calls per script through the real server's socket, sequentially,
    with the exact model; then hostile script names; the server must log one line per
    failure and never reach socketserver's error handler."""
    seed(setup)
    server = FastAGIServer(setup.config, pool_size=4)
    model = Model(QueueFold(setup))
    problems = []
    total = 0
    try:
        for script in SCRIPTS:
            for index, case in enumerate(cases_for(script, SEED + 20 + SCRIPTS.index(script), FASTAGI)):
                expected = expect(case, spawned=False, model=model)
                before = len(server.log)
                call = call_case(server, case)
                found = problems_of(call, expected) + check_log(server.log[before:], expected)
                if found:
                    problems.append("%s #%d %s: %s" % (script, index, case.describe(), "; ".join(found)))
                total += 1
        generator = Hostile(SEED + 30)
        for name in HOSTILE_SCRIPT_NAMES + [generator.value() for _ in range(100)]:
            seen = fastagi.script_name({"agi_network_script": through_environment(name),
                                        "agi_request": through_environment("agi://127.0.0.1/%s" % name)})
            if seen in NAMES:
                continue  # e.g. a generated 'delnum' would really be delnum
            before = len(server.log)
            call = call_case(server, Case("vip_or_not", ["89130751580"], "89130751580"), script=name)
            lines = server.log[before:]
            if call.commands or len(lines) != 1 or "\n" in lines[0] or "unknown script" not in lines[0]:
                problems.append("script name %s: commands %s, log %s" % (_short(name), call.commands, _short(lines)))
            total += 1
        # Still serving afterwards.
        call = call_case(server, Case("vip_or_not", ["89130751580"], ""))
        assert call.variables == {"QUEUE_PRIO": "30", "VIP": "1", "VIP_LABEL": VIPS["79130751580"][1]}
    finally:
        server.close()
        model.fold.close()
    assert server.errors == []
    report(problems, total)
    check_tables(setup, model=model)


# -- the CLI ----------------------------------------------------------------------------------
def run_cli(args, env):
    return vipsticky(env, *args, timeout=60)


CLI_BAD_NUMBERS = [
    ["vip", "add", "abc"],
    ["vip", "add", ""],
    ["vip", "add", "8913\n0751580"],
    ["vip", "add", "89130751580'; DROP TABLE vip_numbers; --"],
    ["vip", "add", "%"],
    ["vip", "add", "*89130751580"],
    ["vip", "add", "9" * 10_000],
    ["vip", "remove", "_"],
    ["vip", "add", "--label", "x\ny", "89130751580"],
    ["vip", "add", "--label", "L" * 256, "89130751580"],
    ["bindings", "set", "1'; DROP TABLE x", "PJSIP/a"],
    ["bindings", "set", "89130751580", "PJSIP/a&PJSIP/b"],
    ["bindings", "set", "89130751580", "PJSIP/a,b"],
    ["bindings", "set", "89130751580", "PJSIP/a\nPJSIP/b"],
    ["bindings", "set", "89130751580", "PJSIP/alena", "--queue", "a,b"],
    ["bindings", "set", "89130751580", "PJSIP/alena", "--queue", "${EVIL}"],
    ["bindings", "delete", "*72"],
    ["lookup", "--queue", "a|b", "89130751580"],
]
CLI_BAD_OPTIONS = [
    ["vip", "add", "--priority", "x", "89130751580"],
    ["vip", "add", "--priority", "99999999", "89130751580"],
    ["vip", "add", "--priority"],
    ["bogus"],
    ["lookup"],
    ["lookup", "1", "2"],
    ["vip", "bogus"],
    ["bindings", "set", "89130751580"],
    ["bindings", "list", "--bogus-flag"],
    ["--config"],
    ["lookup", "--queue"],
    ["serve", "--listen", "nonsense"],
    ["serve", "--pool", "0"],
    ["install-schema", "--addressbook", "--bogus"],
]


@pytest.mark.parametrize("args", CLI_BAD_NUMBERS + CLI_BAD_OPTIONS,
                         ids=["bad-number-%d" % i for i in range(len(CLI_BAD_NUMBERS))]
                         + ["bad-option-%d" % i for i in range(len(CLI_BAD_OPTIONS))])
def test_cli_bad_input(sqlite, args):
    seed(sqlite)
    before = table_rows(sqlite)[:2]
    assert_one_error_line(run_cli(args, sqlite.env), args)
    assert table_rows(sqlite)[:2] == before


def test_cli_bad_input_mariadb(mariadb):
    """The bad numbers once on MariaDB too: nothing reaches the tables."""
    seed(mariadb)
    before = table_rows(mariadb)[:2]
    for args in CLI_BAD_NUMBERS:
        assert_one_error_line(run_cli(args, mariadb.env), args)
    assert table_rows(mariadb)[:2] == before


BAD_CONFIGS = {
    "garbage": b"this is not an ini file\n\x01\x02 [[[\n= = =\n",
    "postgres": b"[database]\nurl = postgres://x\n",
    "national-length": b"[numbers]\nnational_length = abc\n",
    "national-length-continued": b"[numbers]\nnational_length = 10\n  abc\n",
    "not-utf8": b"[database]\nurl = sqlite:////tmp/\xff\xfe.sqlite3\n",
    "duplicate-section": b"[database]\nurl = sqlite:////tmp/a\n[database]\nurl = sqlite:////tmp/b\n",
    "duplicate-key": b"[database]\nurl = sqlite:////tmp/a\nurl = sqlite:////tmp/b\n",
    "bad-port": b"[database]\nurl = mysql://u:secret@127.0.0.1:99999/x\n",
    "no-database-name": b"[database]\nurl = mysql://u:secret@127.0.0.1:3306/\n",
    "empty-sqlite-path": b"[database]\nurl = sqlite:///\n",
    "bad-timeout": b"[database]\nurl = sqlite:////tmp/x.sqlite3\nconnect_timeout = -1\n",
    "bad-ssl": b"[database]\nurl = sqlite:////tmp/x.sqlite3\nssl = maybe\n",
    "bad-source": b"[vip]\nsource = everything\n",
    "bad-group": b"[vip]\ngroups = VIP\n",
    "bad-queue-section": b"[queue a,b]\nttl = 5\n",
    "bad-ttl": b"[sticky]\nttl = 0\n",
    "bad-sound": b"[sticky]\nunbind_sound = $(reboot)\n",
    "bad-facility": b"[log]\nsyslog_facility = kern\n",
    "closed-port": b"[database]\nurl = mysql://root:secret@127.0.0.1:1/x\nconnect_timeout = 1\n",
    "missing-sqlite-folder": b"[database]\nurl = sqlite:////nonexistent/folder/x.sqlite3\n",
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("command", [["lookup", "89130751580"], ["vip", "add", "89130751580"]],
                         ids=["lookup", "vip-add"])
def test_cli_bad_config(tmp_path, name, command):
    path = tmp_path / "vipsticky.conf"
    path.write_bytes(BAD_CONFIGS[name])
    result = run_cli(command, dict(os.environ, VIPSTICKY_CONFIG=str(path)))
    assert_one_error_line(result, name)
    assert "secret" not in result.stderr + result.stdout


@pytest.mark.parametrize("where", ["missing-file", "directory"])
def test_cli_config_path_unusable(tmp_path, where):
    path = tmp_path / "nothing-here.conf"
    if where == "directory":
        path.mkdir()
    for command in (["lookup", "89130751580"], ["purge"], ["--config", str(path), "vip", "list"]):
        assert_one_error_line(run_cli(command, dict(os.environ, VIPSTICKY_CONFIG=str(path))), (where, command))


def test_cli_config_path_with_line_break(tmp_path):
    result = run_cli(["lookup", "89130751580"], dict(os.environ, VIPSTICKY_CONFIG=str(tmp_path / "a\nb.conf")))
    assert_one_error_line(result, "path with a line break")
