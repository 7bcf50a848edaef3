"""AGI(sticky_route,ACTION,...): route a caller back to the agent they talked to.

lookup[,NUMBER[,QUEUE]]           before Queue(): STICKY_AGENT, STICKY_DIAL_TIMEOUT,
                                  STICKY_STATUS = found|waited|busy|none|expired|unavailable|no-number|error
remember[,NUMBER[,QUEUE[,AGENT]]] when an agent answered (Queue()'s AGI argument, or a
                                  Dial U() subroutine): STICKY_STATUS = stored|pending|no-number|bad-agent|error
hangup,KEY,QUEUE                  the hangup handler lookup pushes when [sticky] min_talk is set:
                                  binds the agent who talked long enough; STICKY_STATUS =
                                  stored|short|unbound|unanswered|error
NUMBER defaults to the caller ID, QUEUE to the global scope, AGENT to ${MEMBERINTERFACE}.
An agent is stored and dialled only when it matches [sticky] agents (per queue in
[queue NAME]): a binding that does not is `unavailable`, never dialled.
With busy_wait, a bound agent on another call is waited for (the caller hears ringing):
`waited` when they came free in time, `busy` when not (then the queue, as `unavailable`).
"""
import sys
import time

from .call import BadArgument, Script, check_count, number_and_queue, warn
from .events import Outcome
from .rules import agent_allowed, printable, valid_queue

# DEVICE_STATE values that mean "ringing this agent now would only make the caller wait".
BUSY_STATES = frozenset(("UNAVAILABLE", "INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD", "INVALID"))
# Of those, the ones of an agent who is there and will be free again: worth busy_wait.
ENGAGED_STATES = frozenset(("INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"))
POLL_SECONDS = 0.1  # how often a busy-waiting caller's agent is looked at again (app_queue: every retry s)
# The dialplan context lookup pushes as the caller's hangup handler when min_talk is set.
HANGUP_CONTEXT = "vipsticky-hangup"
SEPARATOR = "|"  # between the values of one GET FULL VARIABLE (no interface or number holds it)


def handle(channel, args, config, database):
    action = args[0] if args else ""
    if action == "lookup":
        check_count(args, 3, "sticky_route,lookup[,NUMBER[,QUEUE]]")
        return lookup(channel, args[1:], config, database)
    if action == "remember":
        check_count(args, 4, "sticky_route,remember[,NUMBER[,QUEUE[,AGENT]]]")
        return remember(channel, args[1:], config, database)
    if action == "hangup":
        check_count(args, 3, "sticky_route,hangup,KEY,QUEUE")
        return hangup(channel, args[1:], config, database)
    raise BadArgument("unknown action %r: use lookup or remember" % action[:40])  # hangup: lookup pushes it


def lookup(channel, args, config, database):
    key, queue = number_and_queue(channel, args, config)
    settings = config.sticky.for_queue(queue)
    channel.set("STICKY_DIAL_TIMEOUT", settings.dial_timeout)
    if key is not None and settings.min_talk:
        # Armed before the database is asked: a binding is decided at hangup even when
        # the database is down now.
        channel.set("CHANNEL(hangup_handler_push)", "%s,s,1(%s,%s)" % (HANGUP_CONTEXT, key, queue))
    row = None if key is None else database.binding_lookup(key, queue)
    candidate = row[0] if row is not None and row[1] > 0 and agent_allowed(row[0], settings.agents) else ""
    asterisk = ask(channel, queue, candidate)
    if queue and asterisk["exists"] == "0":
        warn(channel, SCRIPT, config, "queue %s does not exist in queues.conf: check the dialplan's queue "
                                      "argument" % queue)
    agent, status = "", "no-number"
    if key is not None:
        if row is None:
            status = "none"
        elif row[1] <= 0:
            status = "expired"  # purge has not run yet; never route by it
        elif not candidate or not in_service(candidate, queue, asterisk):
            status = "unavailable"
        elif asterisk["state"] not in BUSY_STATES:
            agent, status = candidate, "found"
        elif settings.busy_wait and asterisk["state"] in ENGAGED_STATES:
            status = "waited" if wait_for(channel, candidate, settings.busy_wait) else "busy"
            agent = candidate if status == "waited" else ""
        else:
            status = "unavailable"
    channel.set("STICKY_AGENT", agent)
    channel.set("STICKY_STATUS", status)
    return Outcome(status, queue, key, agent=agent or (row[0] if row else ""))


def ask(channel, queue, agent):
    """What lookup needs from Asterisk, in one GET FULL VARIABLE: whether the queue exists,
    and for a candidate agent its device state and the queue's members; then, for a member
    only, whether they are paused (QUEUE_MEMBER logs an ERROR for a non-member, and answers 0)."""
    names, parts = [], []
    if queue:
        names.append("exists")
        parts.append("${QUEUE_EXISTS(%s)}" % queue)
    if agent:
        names.append("state")
        parts.append("${DEVICE_STATE(%s)}" % agent)
        if queue:
            names.append("members")  # last: the list holds commas
            parts.append("${QUEUE_MEMBER_LIST(%s)}" % queue)
    answers = {"state": "", "members": "", "paused": ""}
    if parts:
        values = channel.evaluate(SEPARATOR.join(parts)).split(SEPARATOR, len(parts) - 1)
        answers.update(zip(names, (value.strip() for value in values)))
    answers["state"] = answers["state"].upper()
    answers["member"] = bool(agent) and agent in [member.strip() for member in answers["members"].split(",")]
    if agent and queue and answers["member"]:
        answers["paused"] = channel.evaluate("${QUEUE_MEMBER(%s,paused,%s)}" % (queue, agent)).strip()
    return answers


def in_service(agent, queue, asterisk):
    """The agent is a known device and, for a queue, still a member and not paused."""
    if asterisk["state"] in ("UNAVAILABLE", "INVALID"):
        return False
    return not queue or (asterisk["member"] and asterisk["paused"] != "1")


def wait_for(channel, agent, seconds):
    """Let the caller hear ringing while the agent's device is engaged, up to seconds;
    True when it came free in time."""
    channel.ring()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        if channel.evaluate("${DEVICE_STATE(%s)}" % agent).strip().upper() not in BUSY_STATES:
            return True
    return False


def remember(channel, args, config, database):
    key, queue = number_and_queue(channel, args, config)
    if key is None:
        channel.set("STICKY_STATUS", "no-number")
        return Outcome("no-number", queue)
    agent = args[2] if len(args) > 2 and args[2] else channel.get("MEMBERINTERFACE")
    settings = config.sticky.for_queue(queue)
    if not agent_allowed(agent, settings.agents):
        channel.set("STICKY_STATUS", "bad-agent")
        if not agent:
            warn(channel, SCRIPT, config, "no agent to bind: ${MEMBERINTERFACE} is empty; set setinterfacevar=yes "
                                          "in queues.conf for queue %s" % (queue or "(any)"))
        else:
            warn(channel, SCRIPT, config, "agent %s not bound: it matches no [sticky] agents pattern (%s)"
                 % (printable(agent, 40), ", ".join(settings.agents)))
        return Outcome("bad-agent", queue, key)
    if settings.min_talk:
        # Decided at hangup (the handler lookup pushed): only a conversation of min_talk
        # seconds binds. Kept on this channel: the caller's in Queue()'s AGI argument.
        channel.set("STICKY_TALK", talk_note(time.time(), agent))
        channel.set("STICKY_STATUS", "pending")
        return Outcome("pending", queue, key, agent=agent)
    database.remember(key, queue, agent, settings.ttl)
    channel.set("STICKY_STATUS", "stored")
    return Outcome("stored", queue, key, agent=agent)


def talk_note(answered_at: float, agent: str) -> str:
    """STICKY_TALK: when the agent answered (epoch seconds) and who; hangup reads it back."""
    return "%.3f %s" % (answered_at, agent)


def hangup(channel, args, config, database):
    """At the caller's hangup: bind the agent who answered if they talked min_talk seconds,
    unless the caller pressed * (delnum set STICKY_UNBOUND). The agent who answered the
    queue is in STICKY_TALK (remember); the one who answered the direct Dial() is
    STICKY_AGENT, with Dial()'s own ANSWEREDTIME."""
    key = args[0] if args else ""
    queue = args[1] if len(args) > 1 else ""
    if not (key.isdigit() and len(key) <= 15) or (queue and not valid_queue(queue)):
        raise BadArgument("hangup takes the number key and queue that lookup pushed")
    settings = config.sticky.for_queue(queue)
    agent, talked = "", 0
    talk = channel.get("STICKY_TALK").split(" ", 1)
    if len(talk) == 2 and talk[0].replace(".", "", 1).isdigit():
        agent, talked = talk[1], time.time() - float(talk[0])
    elif channel.get("DIALSTATUS") == "ANSWER":
        agent, answered = channel.get("STICKY_AGENT"), channel.get("ANSWEREDTIME")
        talked = int(answered) if answered.isdigit() else 0
    if not agent:
        status = "unanswered"
    elif channel.get("STICKY_UNBOUND") == "1":
        status = "unbound"  # the caller said "not this agent" during the call
    elif talked < settings.min_talk:
        status = "short"  # a wrong number: the previous binding stays as it was
    elif not agent_allowed(agent, settings.agents):
        status = "bad-agent"
    else:
        database.remember(key, queue, agent, settings.ttl)
        status = "stored"
    channel.set("STICKY_STATUS", status)
    return Outcome(status, queue, key, agent=agent)


def fail_open(channel, config):
    channel.set("STICKY_AGENT", "")
    channel.set("STICKY_STATUS", "error")


def patience(config, args):
    """lookup may wait busy_wait seconds for a bound agent on another call."""
    if args[:1] != ["lookup"]:
        return 0
    queue = args[2] if len(args) > 2 and valid_queue(args[2]) else ""
    return config.sticky.for_queue(queue).busy_wait


SCRIPT = Script("sticky_route", handle, fail_open, patience)
main = SCRIPT.main

if __name__ == "__main__":
    sys.exit(main())
