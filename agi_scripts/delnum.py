"""AGI(delnum[,NUMBER[,QUEUE]]): the caller pressed * : forget their agent.

Without QUEUE the binding goes in every scope (the caller said "not this agent").
It deletes first and plays the confirmation after, so a missing sound never stops
the unbind; it never hangs up. Sets DELNUM_STATUS = deleted|none|no-number|error.
"""
import sys

from .channel import run, valid_queue
from .numbers import number_key
from .sticky_route import BadArgument


def handle(channel, args, config, database):
    raw = args[0] if args else channel.caller_id
    queue = args[1] if len(args) > 1 and args[1] else None
    if queue is not None and not valid_queue(queue):
        raise BadArgument("not a usable queue name")
    key = number_key(raw, config.numbers)
    if key is None:
        channel.set("DELNUM_STATUS", "no-number")
        return
    removed = database.forget(key, queue)
    channel.set("DELNUM_STATUS", "deleted" if removed else "none")
    if config.sticky.unbind_sound:
        channel.play(config.sticky.unbind_sound)


def fail_open(channel, config):
    channel.set("DELNUM_STATUS", "error")


def main():
    return run("delnum", handle, fail_open)


if __name__ == "__main__":
    sys.exit(main())
