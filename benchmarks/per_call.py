"""Section a: per-call wall time of vip_or_not and sticky_route lookup, spawned as Asterisk does, against the floor."""
import re
import statistics
import sys
import time

from agi_scripts.asterisk_standin import Asterisk, Peer, script_command
from agi_scripts.config import load
from agi_scripts.database import Database
from databases import AGENT, HIT_KEY, HIT_NUMBER, QUEUE, seed_caller
from processes import write_floor
from report import Phase, summary

TITLE = "per-call wall time vs the floor"
DIALECTS = (("MariaDB", "mysql", "pymysql"), ("SQLite", "sqlite", "sqlite3"))
# One round: each script run right after a floor run of its own, and the floor that ends as
# the scripts do (os._exit, no interpreter teardown).
KINDS = ("floor", "vip", "floor", "sticky", "floor", "vip_nocache", "floor", "vip_noevents", "floor_exit")
SCRIPTS = ((0, "vip", "vip_or_not (VIP found)", "vip_or_not"),
           (1, "sticky", "sticky_route lookup (found)", "sticky_route"),
           (2, "vip_nocache", "vip_or_not, no bytecode cache (PYTHONDONTWRITEBYTECODE=1)", "vip_or_not uncached"),
           (3, "vip_noevents", "vip_or_not, [log] events = off", "vip_or_not events off"))
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def measure(report, workspace, quick):
    rounds = 8 if quick else 40
    warmup = 2 if quick else 4
    with Phase(report, "a: set up MariaDB and SQLite"):
        setups = [prepare(workspace, *dialect) for dialect in DIALECTS]
    commands = dict(vip=script_command("vip_or_not"), sticky=script_command("sticky_route"))
    report.details["a_commands"] = dict(vip_or_not=commands["vip"], sticky_route=commands["sticky"],
                                        floor=[s["floor"][0] for s in setups])
    times = {(s["label"], kind): [] for s in setups for kind in KINDS}
    with Phase(report, "a: %d interleaved rounds (+%d warm-up) of floor, vip_or_not, floor, sticky_route lookup, "
               "floor, vip_or_not without bytecode cache, floor, vip_or_not with events off, the floor ending "
               "with os._exit(); MariaDB and SQLite"
               % (rounds, warmup)):
        for index in range(warmup + rounds):
            for setup in setups:
                for kind in KINDS:
                    elapsed = run(kind, setup, commands)
                    if index >= warmup:
                        times[(setup["label"], kind)].append(elapsed)
    for setup in setups:
        ratio_rows(report, setup["label"], setup["driver"], times)

    # Where the time goes: imports beyond the floor, and the in-process costs.
    runs = 3 if quick else 7
    with Phase(report, "a: -X importtime, %d runs each of vip_or_not and floor per database" % runs):
        for setup in setups:
            explain_imports(report, setup, commands["vip"], times, runs)
        # The rest of the per-call path, measured in this (already warm) process.
        for setup in setups:
            explain_rest(report, setup, times, 5 if quick else 20)


def prepare(workspace, label, dialect, driver):
    """The database, and two configs for it: the calls' outcomes recorded in a spool (the
    default) and not recorded ([log] events = off)."""
    name = "percall_" + dialect
    path, config = workspace.setup(name, dialect)
    seed_caller(config, sticky=True)
    no_events = workspace.config(name + "_noevents", config.database.url, "[log]\nevents = off\n")
    return dict(label=label, path=path, env=workspace.env(path),
                env_nocache=workspace.env(path, bytecode_cache=False), env_noevents=workspace.env(no_events),
                floor=write_floor(workspace.tmp, "floor_" + driver, ["asterisk.agi", driver]),
                floor_exit=write_floor(workspace.tmp, "floor_exit_" + driver, ["asterisk.agi", driver], True),
                driver=driver)


def asterisk():
    """The Asterisk the scripts talk to: the sticky agent free and in the queue."""
    return Asterisk(devices={AGENT: "NOT_INUSE"}, queues={QUEUE: {AGENT: False}})


def run(kind, setup, commands):
    """One spawned process of `kind`, checked; its wall time."""
    if kind in ("floor", "floor_exit"):
        call = Peer(Asterisk()).run_script("floor", [], process_env=setup["env"], command=setup[kind])
    elif kind == "sticky":
        call = Peer(asterisk()).run_script("sticky_route", ["lookup", HIT_NUMBER, QUEUE],
                                           process_env=setup["env"], command=commands["sticky"])
        if call.variables.get("STICKY_STATUS") != "found" or call.exit_code != 0:
            raise RuntimeError("sticky_route lookup on %s did not find the binding: %r %r %s" % (
                setup["label"], call.exit_code, call.variables, call.stderr[-500:]))
        if not any("DEVICE_STATE" in c for c in call.commands) or \
                not any("QUEUE_MEMBER(" in c for c in call.commands):
            raise RuntimeError("sticky_route lookup skipped the DEVICE_STATE/QUEUE checks: %r" % call.commands)
    else:
        env = setup[{"vip": "env", "vip_nocache": "env_nocache", "vip_noevents": "env_noevents"}[kind]]
        call = Peer(asterisk()).run_script("vip_or_not", [HIT_NUMBER], process_env=env, command=commands["vip"])
        if call.variables.get("QUEUE_PRIO") != "10" or call.exit_code != 0:
            raise RuntimeError("vip_or_not on %s did not find the VIP: %r %r %s" % (
                setup["label"], call.exit_code, call.variables, call.stderr[-500:]))
    if call.timed_out:
        raise RuntimeError("%s on %s timed out" % (kind, setup["label"]))
    return call.elapsed


def ratio_rows(report, label, driver, times):
    floors = times[(label, "floor")]  # one per script in each round, each right before that script's run
    report.row("a", "floor: spawn + import asterisk.agi, %s (%s)" % (driver, label), "ms", summary(floors),
               p99=False)
    # The scripts end with os._exit() once the call is answered; this floor ends so too, so
    # the ratios against it are what the project's own code costs a call.
    exits = times[(label, "floor_exit")]
    report.row("a", "floor ending with os._exit() as the scripts do, %s" % label, "ms", summary(exits), p99=False)
    for kind, name in (("vip", "vip_or_not"), ("sticky", "sticky_route")):
        values = times[(label, kind)]
        report.row("a", "  ratio %s / that floor, %s" % (name, label), "ratio",
                   summary([v / f for v, f in zip(values, exits)]), p99=False,
                   ratio_of_medians=statistics.median(values) / statistics.median(exits))
    for position, kind, title, name in SCRIPTS:
        values = times[(label, kind)]
        floor = floors[position::len(SCRIPTS)]
        report.row("a", "%s, %s" % (title, label), "ms", summary(values), p99=False)
        stats = summary([v / f for v, f in zip(values, floor)])
        target = "<= 1.2" if kind in ("vip", "sticky") else None
        report.row("a", "  ratio %s / floor, %s" % (name, label), "ratio", stats, target=target,
                   met=(stats["median"] <= 1.2) if target else None, p99=False,
                   ratio_of_medians=statistics.median(values) / statistics.median(floor))


def parse_importtime(text):
    """-X importtime output -> list of root nodes {name, self, children} (its order is post-order)."""
    pending = []  # (depth, node)
    for line in text.splitlines():
        match = IMPORT_LINE.match(line)
        if not match:
            continue
        depth = len(match.group(3)) // 2
        node = dict(name=match.group(4), self=int(match.group(1)) / 1e6, cum=int(match.group(2)) / 1e6,
                    children=[])
        while pending and pending[-1][0] == depth + 1:
            node["children"].insert(0, pending.pop()[1])
        pending.append((depth, node))
    return [node for _, node in pending]


def walk(nodes, parents=()):
    for node in nodes:
        yield node, parents
        yield from walk(node["children"], parents + (node["name"],))


def import_breakdown(floor_runs, script_runs):
    """Modules the script imports beyond the floor: median self time each, and the top-level
    ones with the extra time below them."""
    floor_names = set()
    for roots in floor_runs:
        floor_names.update(node["name"] for node, _ in walk(roots))
    selfs, subtree, first_parent = {}, {}, {}

    def extra_time(node):
        own = node["self"] if node["name"] not in floor_names else 0.0
        return own + sum(extra_time(child) for child in node["children"])

    for roots in script_runs:
        seen = set()
        for node, parents in walk(roots):
            name = node["name"]
            if name in floor_names or name in seen:
                continue
            seen.add(name)
            selfs.setdefault(name, []).append(node["self"])
            first_parent.setdefault(name, parents[-1] if parents else "")
            subtree.setdefault(name, []).append(extra_time(node))
    per_module = sorted(((statistics.median(v), k) for k, v in selfs.items()), reverse=True)
    top_level = sorted(((statistics.median(v), k) for k, v in subtree.items()), reverse=True)
    total = statistics.median([sum(node["self"] for node, _ in walk(roots) if node["name"] not in floor_names)
                               for roots in script_runs])
    floor_total = statistics.median([sum(node["self"] for node, _ in walk(roots)) for roots in floor_runs])
    return dict(extra_total=total, floor_total=floor_total, modules=len(per_module),
                top_modules=[dict(module=k, self_ms=round(v * 1000, 2), imported_by=first_parent.get(k, ""))
                             for v, k in per_module[:15]],
                top_level=[dict(module=k, extra_ms=round(v * 1000, 2)) for v, k in top_level[:10]])


def explain_imports(report, setup, vip_cmd, times, runs):
    importtime = [sys.executable, "-X", "importtime"]
    floor_runs, script_runs = [], []
    for _ in range(runs):
        call = Peer(Asterisk()).run_script("floor", [], process_env=setup["env"], command=importtime + setup["floor"])
        floor_runs.append(parse_importtime(call.stderr))
        call = Peer(asterisk()).run_script("vip_or_not", [HIT_NUMBER], process_env=setup["env"],
                                           command=importtime + (vip_cmd[1:] if vip_cmd[0] == sys.executable
                                                                 else vip_cmd))
        script_runs.append(parse_importtime(call.stderr))
    breakdown = import_breakdown(floor_runs, script_runs)
    report.details.setdefault("a_imports", {})[setup["label"]] = breakdown
    gap = statistics.median(times[(setup["label"], "vip")]) - statistics.median(times[(setup["label"], "floor_exit")])
    report.note("a", "%s: vip_or_not is %.1f ms above the floor that ends as it does (os._exit); -X importtime "
                "counts %d modules beyond the "
                "floor, %.1f ms of import (self times; the floor's own imports: %.1f ms). Extra import time "
                "below each (cumulative): %s. Largest single modules (self): %s." % (
                    setup["label"], gap * 1000, breakdown["modules"], breakdown["extra_total"] * 1000,
                    breakdown["floor_total"] * 1000,
                    ", ".join("%s %.1f ms" % (m["module"], m["extra_ms"]) for m in breakdown["top_level"][:8]),
                    ", ".join("%s %.1f ms (from %s)" % (m["module"], m["self_ms"], m["imported_by"] or "-")
                              for m in breakdown["top_modules"][:10])))


def explain_rest(report, setup, times, count):
    """Config load, connect and the first lookup in this process, and what is left of the gap."""
    loads, connects, lookups = [], [], []
    for _ in range(count):
        started = time.perf_counter()
        config = load(setup["path"])
        loads.append(time.perf_counter() - started)
        database = Database(config.database)
        started = time.perf_counter()
        database.connect()
        connects.append(time.perf_counter() - started)
        started = time.perf_counter()
        database.vip_lookup(HIT_KEY, config.vip)
        lookups.append(time.perf_counter() - started)
        database.close()
    label = setup["label"]
    parts = dict(config_load=statistics.median(loads), connect=statistics.median(connects),
                 first_lookup=statistics.median(lookups))
    report.details.setdefault("a_inprocess", {})[label] = parts
    report.note("a", "%s, in-process (modules already imported): config load %.2f ms, connect %.2f ms, "
                "first vip_lookup on the new connection %.2f ms." % (
                    label, parts["config_load"] * 1000, parts["connect"] * 1000, parts["first_lookup"] * 1000))
    floor_ms = 1000 * statistics.median(times[(label, "floor_exit")])  # ends as the scripts do
    gap = 1000 * statistics.median(times[(label, "vip")]) - floor_ms
    imports = 1000 * report.details["a_imports"][label]["extra_total"]
    inproc = 1000 * sum(parts.values())
    uncached = 1000 * statistics.median(times[(label, "vip_nocache")]) - floor_ms
    rest = gap - imports - inproc
    if rest > 0:
        rest_text = ("the remaining %.1f ms are the AGI exchange (3 commands, each a pipe round trip to the "
                     "Peer), pyst2's per-call work and scheduling" % rest)
    else:
        rest_text = ("nothing measurable is left beyond those (importtime's own bookkeeping inflates "
                     "the import figure; the gap itself is noisy on a loaded machine)")
    report.note("a", "%s: vip_or_not spends %.1f ms above the floor that ends as it does; -X importtime puts "
                "the extra imports at "
                "%.1f ms and config + connect + lookup take %.1f ms in-process; %s. Without a bytecode "
                "cache (PYTHONDONTWRITEBYTECODE=1, as this dev shell sets) the project's modules compile "
                "on every call: %.1f ms above the floor instead." % (
                    label, gap, imports, inproc, rest_text, uncached))
