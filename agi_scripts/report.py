"""`vipsticky report`: the recorded call outcomes summed per day and queue.

A call is one Asterisk channel (agi_uniqueid): its vip_or_not, sticky_route lookup,
remember in Queue()'s AGI argument, hangup handler and the caller's * all run on the
caller's channel and share it, so each is counted under the queue its lookup named.
A remember in Dial()'s U() runs on the agent's channel and names its queue itself.
Days are the host's local calendar days.
"""
import time
from collections import OrderedDict

from .call_proof import reserved_key

# lookup statuses of a caller who had a live binding, and of those the ones that reached the agent
WITH_BINDING = ("found", "waited", "busy", "unavailable", "expired")
HITS = ("found", "waited")
MISSES = ("unavailable", "busy", "expired")
COLUMNS = ("day", "queue", "calls", "vip_calls", "with_binding", "sticky_hits", "hit_rate", "unavailable",
           "busy", "expired", "waited", "bindings_made", "unbound", "wrong_number", "errors")
SINCE_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> int:
    """'7d', '12h', '30m', '2w' -> seconds; ValueError otherwise."""
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in SINCE_UNITS or not text[:-1].isdigit() or int(text[:-1]) < 1:
        raise ValueError("use a number and a unit: 30m, 12h, 7d or 2w")
    return int(text[:-1]) * SINCE_UNITS[text[-1]]


def daily(database, plan, seconds: int, queue=None) -> list:
    """The rows of the last seconds, of one queue or (None) all; the doctor's test calls
    left out. Every queue's events are read: a call's VIP and * carry no queue of their own."""
    rows = summarize(database.events(database.now() - seconds), reserved_key(plan))
    return [row for row in rows if queue is None or row["queue"] == queue]


def summarize(events, excluded_key: str = "") -> list:
    """Rows (dicts of COLUMNS) per day and queue, oldest day first, from events as
    Database.events returns them (at, call_id, script, queue, number_key, status, vip,
    priority, agent). Events of excluded_key (the doctor's test number) are left out."""
    events = [event for event in events if not (excluded_key and event[4] == excluded_key)]
    call_queue = {}
    for at, call_id, script, queue, _key, status, *_ in events:
        if script == "sticky_route" and call_id and _is_lookup(status):
            call_queue.setdefault(call_id, queue)
    rows = OrderedDict()
    calls, vip_calls = {}, {}
    for at, call_id, script, queue, _key, status, vip, _priority, _agent in events:
        queue = queue or call_queue.get(call_id, "")
        day = time.strftime("%Y-%m-%d", time.localtime(at))
        row = rows.get((day, queue))
        if row is None:
            row = rows[(day, queue)] = dict.fromkeys(COLUMNS, 0)
            row.update(day=day, queue=queue)
            calls[(day, queue)], vip_calls[(day, queue)] = set(), set()
        caller = call_id or ("event", at, len(calls[(day, queue)]))  # no channel id: one call each
        if script == "vip_or_not" or (script == "sticky_route" and _is_lookup(status)):
            calls[(day, queue)].add(caller)
        if script == "vip_or_not" and vip:
            vip_calls[(day, queue)].add(caller)
        if status == "error":
            row["errors"] += 1
        elif script == "sticky_route" and _is_lookup(status):
            row["with_binding"] += status in WITH_BINDING
            row["sticky_hits"] += status in HITS
            if status in MISSES or status == "waited":
                row[status] += 1
        elif script == "sticky_route" and status == "stored":
            row["bindings_made"] += 1
        elif script == "sticky_route" and status == "short":
            row["wrong_number"] += 1
        elif script == "delnum" and status == "deleted":
            row["unbound"] += 1
    for place, row in rows.items():
        row["calls"], row["vip_calls"] = len(calls[place]), len(vip_calls[place])
        row["hit_rate"] = round(row["sticky_hits"] / row["with_binding"], 3) if row["with_binding"] else None
    return sorted(rows.values(), key=lambda row: (row["day"], row["queue"]))


def _is_lookup(status: str) -> bool:
    return status in WITH_BINDING or status in ("none", "no-number")


def table(rows) -> list:
    """The text of `report`: one line per day and queue."""
    heading = ("day", "queue", "calls", "VIP", "bound", "hits", "rate", "unavail", "busy", "expired", "waited",
               "bound+", "unbound*", "wrong#", "errors")
    layout = "%-10s %-12s %6s %5s %6s %5s %5s %7s %5s %7s %6s %6s %8s %6s %6s"
    lines = [layout % heading]
    for row in rows:
        rate = "-" if row["hit_rate"] is None else "%d%%" % round(row["hit_rate"] * 100)
        lines.append(layout % (row["day"], row["queue"] or "(global)", row["calls"], row["vip_calls"],
                               row["with_binding"], row["sticky_hits"], rate, row["unavailable"], row["busy"],
                               row["expired"], row["waited"], row["bindings_made"], row["unbound"],
                               row["wrong_number"], row["errors"]))
    return lines
