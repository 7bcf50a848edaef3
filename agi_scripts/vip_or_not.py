"""AGI(vip_or_not[,NUMBER]): set QUEUE_PRIO, VIP and VIP_LABEL before Queue().

NUMBER defaults to the caller ID. app_queue reads QUEUE_PRIO once when Queue()
starts and answers higher priorities first.
"""
import sys

from .channel import run
from .numbers import number_key


def handle(channel, args, config, database):
    raw = args[0] if args else channel.caller_id
    key = number_key(raw, config.numbers)
    found = database.vip_lookup(key, config.vip) if key else None
    if found is None:
        set_result(channel, config.vip.normal_priority, False, "")
    else:
        priority, label, _source = found
        set_result(channel, priority, True, label)


def fail_open(channel, config):
    set_result(channel, config.vip.normal_priority, False, "")


def set_result(channel, priority, vip, label):
    channel.set("QUEUE_PRIO", priority)
    channel.set("VIP", "1" if vip else "0")
    channel.set("VIP_LABEL", label)


def main():
    return run("vip_or_not", handle, fail_open)


if __name__ == "__main__":
    sys.exit(main())
