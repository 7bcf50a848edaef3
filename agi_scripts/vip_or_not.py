"""AGI(vip_or_not[,NUMBER]): set QUEUE_PRIO, VIP and VIP_LABEL before Queue().

NUMBER defaults to the caller ID. app_queue reads QUEUE_PRIO once when Queue()
starts and answers higher priorities first.
"""
import sys

from .call import Script, check_count, number_and_queue
from .events import Outcome


def handle(channel, args, config, database):
    check_count(args, 1, "vip_or_not[,NUMBER]")
    key, _queue = number_and_queue(channel, args, config)
    found = database.vip_lookup(key, config.vip) if key else None
    if found is None:
        set_result(channel, config.vip.normal_priority, False, "")
        return Outcome("normal", "", key, False, config.vip.normal_priority)
    priority, label, _source = found
    set_result(channel, priority, True, label)
    return Outcome("vip", "", key, True, priority)


def fail_open(channel, config):
    set_result(channel, config.vip.normal_priority, False, "")


def set_result(channel, priority, vip, label):
    channel.set("QUEUE_PRIO", priority)
    channel.set("VIP", "1" if vip else "0")
    channel.set("VIP_LABEL", label)


SCRIPT = Script("vip_or_not", handle, fail_open)
main = SCRIPT.main

if __name__ == "__main__":
    sys.exit(main())
