"""AGI(delnum[,NUMBER[,QUEUE]]): the caller pressed * : forget their agent.

Without QUEUE the binding goes in every scope (the caller said "not this agent").
It deletes first and plays the confirmation after, so a missing sound never stops
the unbind; it never hangs up. Sets DELNUM_STATUS = deleted|none|no-number|error.
"""
import sys

from .call import Script, check_count, number_and_queue


def handle(channel, args, config, database):
    check_count(args, 2, "delnum[,NUMBER[,QUEUE]]")
    key, queue = number_and_queue(channel, args, config)
    if key is None:
        channel.set("DELNUM_STATUS", "no-number")
        return
    removed = database.forget(key, queue or None)  # no queue: every scope
    channel.set("DELNUM_STATUS", "deleted" if removed else "none")
    if config.sticky.unbind_sound:
        channel.play(config.sticky.unbind_sound)


def fail_open(channel, config):
    channel.set("DELNUM_STATUS", "error")


SCRIPT = Script("delnum", handle, fail_open)
main = SCRIPT.main

if __name__ == "__main__":
    sys.exit(main())
