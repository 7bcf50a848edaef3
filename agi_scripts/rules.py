"""Value rules: which agents, queue names and labels are usable, and how a value is shown.

Pure functions, no I/O: a call, the CLI and the config reader apply the same rules.
Every call imports this module, so its patterns are compiled on first use (re caches
them), by the calls that need them.
"""
import re

# Tech/resource with nothing that Dial would read as a separator (& , |), no quotes,
# no white space, no dialplan expression characters.
AGENT = r"^(?=.{3,120}$)[A-Za-z][A-Za-z0-9_]{0,31}/[A-Za-z0-9_.@:+=#*/~%-]+$"  # fits VARCHAR(120)
# Queue names come from queues.conf sections; anything that could break an AGI
# argument, a log line or a dialplan expression is refused (and, by valid_queue,
# anything a terminal would not print as it is).
QUEUE_NAME = r"^[^\s\x00-\x1f\x7f\"',|\\()\[\]${}]{1,80}$"
# [sticky] agents: an interface with at most one *, which stands for one name.
AGENT_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,31}/[A-Za-z0-9_.@:+=#~%/-]*\*?[A-Za-z0-9_.@:+=#~%/-]*$"
AGENT_NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+-")  # never @ : / ,
# What would steer a terminal or reorder what it shows: C0 and C1 controls, DEL, and the
# Unicode bidirectional marks, embeddings, overrides and isolates (compiled on first use:
# only the CLI needs it).
UNSHOWABLE = "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
LABEL_LENGTH = 255  # vip_numbers.label


def valid_agent(agent) -> bool:
    return isinstance(agent, str) and bool(re.match(AGENT, agent))


def valid_queue(queue) -> bool:
    # isprintable() is False for every control, format (bidi) and separator character but space.
    return isinstance(queue, str) and bool(re.match(QUEUE_NAME, queue)) and queue.isprintable()


def agent_allowed(agent: str, patterns) -> bool:
    """Whether a usable agent interface matches one of the [sticky] agents patterns."""
    if not valid_agent(agent):
        return False
    for pattern in patterns:
        before, star, after = pattern.partition("*")
        if not star:
            if agent == pattern:
                return True
            continue
        name = agent[len(before):len(agent) - len(after)]
        if (len(agent) > len(before) + len(after) and agent.startswith(before) and agent.endswith(after)
                and AGENT_NAME_CHARACTERS.issuperset(name)):
            return True
    return False


def label_problem(label: str):
    """Why a VIP label cannot be stored, or None when it can."""
    if re.search(UNSHOWABLE, label):
        return "a label must not contain control or bidirectional-override characters"
    if len(label) > LABEL_LENGTH:
        return "a label has at most %d characters" % LABEL_LENGTH
    return None


def shown(text) -> str:
    """A value for a terminal: every control or bidirectional character as an escape."""
    return re.sub(UNSHOWABLE, lambda match: match.group(0).encode("unicode_escape").decode("ascii"), str(text))


def printable(text, limit=80) -> str:
    """A value fit for a one-line message: control characters escaped, length bounded."""
    text = str(text)
    shown = text[:limit].encode("unicode_escape", "backslashreplace").decode("ascii")
    return shown + ("..." if len(text) > limit else "")
