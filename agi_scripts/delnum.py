"""AGI(delnum[,NUMBER[,QUEUE]]): the caller pressed * : forget their agent.

Without QUEUE the binding goes in every scope (the caller said "not this agent").
It deletes first and plays the confirmation after, so a missing sound never stops
the unbind; it never hangs up. Sets DELNUM_STATUS = deleted|none|no-number|error, and
with [sticky] min_talk set, STICKY_UNBOUND = 1 so that the hangup handler binds nobody after it.
"""
import sys

from .call import Script, check_count, number_and_queue
from .events import Outcome


def handle(channel, args, config, database):
    check_count(args, 2, "delnum[,NUMBER[,QUEUE]]")
    key, queue = number_and_queue(channel, args, config)
    if key is None:
        channel.set("DELNUM_STATUS", "no-number")
        return Outcome("no-number", queue)
    if config.sticky.uses_min_talk:
        # First, so that even with the database down the hangup handler binds nobody.
        channel.set("STICKY_UNBOUND", "1")
    removed = database.forget(key, queue or None)  # no queue: every scope
    status = "deleted" if removed else "none"
    channel.set("DELNUM_STATUS", status)
    if config.sticky.unbind_sound:
        channel.play(config.sticky.unbind_sound)
    return Outcome(status, queue, key)


def fail_open(channel, config):
    channel.set("DELNUM_STATUS", "error")


SCRIPT = Script("delnum", handle, fail_open)
main = SCRIPT.main

if __name__ == "__main__":
    sys.exit(main())
