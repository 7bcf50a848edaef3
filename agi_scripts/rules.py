"""Value rules: which agents, queue names and labels are usable, and how a value is shown.

Pure functions, no I/O: a call, the CLI and the config reader apply the same rules.
"""
import re

# Tech/resource with nothing that Dial would read as a separator (& , |), no quotes,
# no white space, no dialplan expression characters.
AGENT = re.compile(r"^(?=.{3,120}$)[A-Za-z][A-Za-z0-9_]{0,31}/[A-Za-z0-9_.@:+=#*/~%-]+$")  # fits VARCHAR(120)
# Characters that would steer a terminal or reorder what it shows: C0 and C1 controls,
# DEL, and the Unicode bidirectional marks, embeddings, overrides and isolates.
UNSHOWABLE = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
UNSHOWABLE_CHAR = re.compile("[%s]" % UNSHOWABLE)
# Queue names come from queues.conf sections; anything that could break an AGI
# argument, a log line, a dialplan expression or a terminal is refused.
QUEUE_NAME = re.compile(r"^[^\s%s\"',|\\()\[\]${}]{1,80}$" % UNSHOWABLE)
LABEL_LENGTH = 255  # vip_numbers.label
# [sticky] agents: an interface with * standing for one name; * never matches @ : / ,
AGENT_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}/[A-Za-z0-9_.@:+=#*/~%-]{1,100}$")
AGENT_NAME = "[A-Za-z0-9_.+-]+"


def valid_agent(agent) -> bool:
    return isinstance(agent, str) and bool(AGENT.match(agent))


def valid_queue(queue) -> bool:
    return isinstance(queue, str) and bool(QUEUE_NAME.match(queue))


def agent_allowed(agent: str, patterns) -> bool:
    """Whether a usable agent interface matches one of the [sticky] agents patterns."""
    if not valid_agent(agent):
        return False
    for pattern in patterns:
        if re.fullmatch(AGENT_NAME.join(re.escape(part) for part in pattern.split("*")), agent):
            return True
    return False


def label_problem(label: str):
    """Why a VIP label cannot be stored, or None when it can."""
    if UNSHOWABLE_CHAR.search(label):
        return "a label must not contain control or bidirectional-override characters"
    if len(label) > LABEL_LENGTH:
        return "a label has at most %d characters" % LABEL_LENGTH
    return None


def shown(text) -> str:
    """A value for a terminal: every control or bidirectional character as an escape."""
    return UNSHOWABLE_CHAR.sub(lambda match: match.group(0).encode("unicode_escape").decode("ascii"), str(text))


def printable(text, limit=80) -> str:
    """A value fit for a one-line message: control characters escaped, length bounded."""
    text = str(text)
    shown = text[:limit].encode("unicode_escape", "backslashreplace").decode("ascii")
    return shown + ("..." if len(text) > limit else "")
