"""Value rules: which agents, queue names and labels are usable, and how a value is shown.

Pure functions, no I/O: a call, the CLI and the config reader apply the same rules.
Every call runs them, so they test characters against sets: a regular expression
would be compiled again in every call's new process (a quarter of a millisecond each).
"""
import re

LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
DIGITS = frozenset("0123456789")
WORD_CHARACTERS = LETTERS | DIGITS | {"_"}  # a channel technology's, a table prefix's
# An agent is Tech/resource, as Dial takes it: a technology of letters, digits and _
# (a letter first, at most 32), then nothing that Dial would read as a separator
# (& , |), no quotes, no white space, no dialplan expression characters. At most 120
# characters: it fits VARCHAR(120).
AGENT_CHARACTERS = WORD_CHARACTERS | frozenset(".@:+=#*/~%-")
AGENT_LENGTH = (3, 120)
# Queue names come from queues.conf sections; anything that could break an AGI
# argument, a log line or a dialplan expression is refused, and anything a terminal
# would not print as it is (isprintable(): controls, and every white space but the
# space, which is refused too).
QUEUE_REFUSED = frozenset(" \"',|\\()[]${}")
QUEUE_LENGTH = 80
# [sticky] agents: an interface with at most one *, which stands for one name.
AGENT_NAME_CHARACTERS = WORD_CHARACTERS | frozenset(".+-")  # never @ : / ,
# What would steer a terminal or reorder what it shows: C0 and C1 controls, DEL, and the
# Unicode bidirectional marks, embeddings, overrides and isolates (only the CLI needs it).
UNSHOWABLE = "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
LABEL_LENGTH = 255  # vip_numbers.label


def valid_agent(agent) -> bool:
    if not isinstance(agent, str) or not AGENT_LENGTH[0] <= len(agent) <= AGENT_LENGTH[1]:
        return False
    technology, slash, resource = agent.partition("/")
    return valid_technology(technology) and bool(slash) and resource != "" and AGENT_CHARACTERS.issuperset(resource)


def valid_agent_pattern(pattern: str) -> bool:
    """A [sticky] agents entry: an agent interface in which one * may stand for a name."""
    technology, slash, resource = pattern.partition("/")
    return (valid_technology(technology) and bool(slash) and resource.count("*") <= 1
            and AGENT_CHARACTERS.issuperset(resource))


def valid_technology(name: str) -> bool:
    """A channel technology as an agent interface starts with (PJSIP, SIP, Local)."""
    return 1 <= len(name) <= 32 and name[0] in LETTERS and WORD_CHARACTERS.issuperset(name)


def valid_queue(queue) -> bool:
    return (isinstance(queue, str) and 1 <= len(queue) <= QUEUE_LENGTH and queue.isprintable()
            and QUEUE_REFUSED.isdisjoint(queue))


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
