"""AGI(sticky_route,ACTION,...): route a caller back to the agent they talked to.

lookup[,NUMBER[,QUEUE]]           before Queue(): STICKY_AGENT, STICKY_DIAL_TIMEOUT,
                                  STICKY_STATUS = found|none|expired|unavailable|no-number|error
remember[,NUMBER[,QUEUE[,AGENT]]] when an agent answered (Queue()'s AGI argument, or a
                                  Dial U() subroutine): STICKY_STATUS = stored|no-number|bad-agent|error
NUMBER defaults to the caller ID, QUEUE to the global scope, AGENT to ${MEMBERINTERFACE}.
An agent is stored and dialled only when it matches [sticky] agents (per queue in
[queue NAME]): a binding that does not is `unavailable`, never dialled.
"""
import sys

from .call import BadArgument, Script, check_count, number_and_queue, warn
from .rules import agent_allowed, printable

# DEVICE_STATE values that mean "ringing this agent now would only make the caller wait".
BUSY_STATES = frozenset(("UNAVAILABLE", "INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD", "INVALID"))


def handle(channel, args, config, database):
    action = args[0] if args else ""
    if action == "lookup":
        check_count(args, 3, "sticky_route,lookup[,NUMBER[,QUEUE]]")
        lookup(channel, args[1:], config, database)
    elif action == "remember":
        check_count(args, 4, "sticky_route,remember[,NUMBER[,QUEUE[,AGENT]]]")
        remember(channel, args[1:], config, database)
    else:
        raise BadArgument("unknown action %r: use lookup or remember" % action[:40])


def lookup(channel, args, config, database):
    key, queue = number_and_queue(channel, args, config)
    settings = config.sticky.for_queue(queue)
    channel.set("STICKY_DIAL_TIMEOUT", settings.dial_timeout)
    if queue and channel.evaluate("${QUEUE_EXISTS(%s)}" % queue).strip() == "0":
        warn(channel, SCRIPT, config, "queue %s does not exist in queues.conf: check the dialplan's queue "
                                      "argument" % queue)
    agent, status = "", "no-number"
    if key is not None:
        row = database.binding_lookup(key, queue)
        if row is None:
            status = "none"
        elif row[1] <= 0:
            status = "expired"  # purge has not run yet; never route by it
        elif agent_allowed(row[0], settings.agents) and available(channel, row[0], queue):
            agent, status = row[0], "found"
        else:
            status = "unavailable"
    channel.set("STICKY_AGENT", agent)
    channel.set("STICKY_STATUS", status)


def available(channel, agent, queue):
    """The agent can take the call now: a known, idle device and, for a queue, still
    a member and not paused (QUEUE_MEMBER answers 0 for non-members, so check both)."""
    if channel.evaluate("${DEVICE_STATE(%s)}" % agent).strip().upper() in BUSY_STATES:
        return False
    if queue:
        members = [member.strip() for member in channel.evaluate("${QUEUE_MEMBER_LIST(%s)}" % queue).split(",")]
        if agent not in members:
            return False
        if channel.evaluate("${QUEUE_MEMBER(%s,paused,%s)}" % (queue, agent)).strip() == "1":
            return False
    return True


def remember(channel, args, config, database):
    key, queue = number_and_queue(channel, args, config)
    if key is None:
        channel.set("STICKY_STATUS", "no-number")
        return
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
        return
    database.remember(key, queue, agent, settings.ttl)
    channel.set("STICKY_STATUS", "stored")


def fail_open(channel, config):
    channel.set("STICKY_AGENT", "")
    channel.set("STICKY_STATUS", "error")


SCRIPT = Script("sticky_route", handle, fail_open)
main = SCRIPT.main

if __name__ == "__main__":
    sys.exit(main())
