"""The benchmark's record: statistics, timed phases, the result table and the machine measured on."""
import math
import os
import platform
import sqlite3
import statistics
import sys
import time

import pymysql


def percentile(values, fraction):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary(values):
    values = list(values)
    if not values:
        return dict(n=0, median=None, min=None, max=None, p99=None)
    return dict(n=len(values), median=statistics.median(values), min=min(values), max=max(values),
                p99=percentile(values, 0.99))


class Report:
    def __init__(self):
        self.rows = []
        self.notes = []
        self.phases = []
        self.details = {}
        self.crashes = []

    def row(self, section, measurement, unit, stats=None, median=None, target=None, met=None, p99=True,
            **extra):
        stats = dict(stats or {})
        if median is not None:
            stats.setdefault("median", median)
        if not p99:
            stats["p99"] = None
        entry = dict(section=section, measurement=measurement, unit=unit, median=stats.get("median"),
                     min=stats.get("min"), max=stats.get("max"), p99=stats.get("p99"), n=stats.get("n"),
                     target=target, met=met)
        entry.update(extra)
        self.rows.append(entry)
        return entry

    def once(self, section, measurement, seconds, **extra):
        """A row for something measured once, in seconds."""
        return self.row(section, measurement, "s", median=seconds, stats=dict(n=1, min=seconds, max=seconds),
                        p99=False, **extra)

    def ratio(self, section, measurement, ratio, unit="ratio", target=None, met=None):
        """A row for one ratio of two medians."""
        return self.row(section, measurement, unit, median=ratio, stats=dict(n=None), p99=False, target=target,
                        met=met)

    def note(self, section, text):
        self.notes.append(dict(section=section, text=text))
        print("  note: %s" % text, flush=True)

    def phase(self, name, seconds):
        self.phases.append(dict(phase=name, seconds=round(seconds, 3)))
        print("  [%6.1f s] %s" % (seconds, name), flush=True)


class Phase:
    """with Phase(report, name): times the block and records it as a phase."""

    def __init__(self, report, name):
        self.report, self.name = report, name

    def __enter__(self):
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.started
        self.report.phase(self.name + ("" if exc[0] is None else " (failed)"), self.seconds)
        return False


def fmt(value, unit):
    if value is None:
        return "-"
    if unit == "ms":
        value *= 1000.0
    if unit in ("ratio", "x"):
        return "%.2f" % value
    if unit == "count":
        return "{:,}".format(int(value))
    if abs(value) >= 100:
        return "%.0f" % value
    if abs(value) >= 10:
        return "%.1f" % value
    if abs(value) >= 1:
        return "%.2f" % value
    return "%.3f" % value


def print_table(report):
    headers = ("measurement", "unit", "median", "min", "max", "p99", "n", "target", "met?")
    lines = []
    for row in report.rows:
        met = "-" if row["met"] is None else ("yes" if row["met"] else "NO")
        lines.append((row["measurement"], row["unit"], fmt(row["median"], row["unit"]), fmt(row["min"], row["unit"]),
                      fmt(row["max"], row["unit"]), fmt(row["p99"], row["unit"]),
                      "-" if not row["n"] else str(row["n"]), row["target"] or "-", met))
    widths = [max(len(headers[i]), *(len(line[i]) for line in lines)) if lines else len(headers[i])
              for i in range(len(headers))]
    out = []
    fmt_line = "  ".join("%%-%ds" % widths[0] if i == 0 else "%%%ds" % widths[i] for i in range(len(headers)))
    out.append(fmt_line % headers)
    out.append("  ".join("-" * w for w in widths))
    section = None
    for row, line in zip(report.rows, lines):
        if section is not None and row["section"] != section:
            out.append("")
        section = row["section"]
        out.append(fmt_line % line)
    print("\n".join(out))


def print_results(report, info, mode, total):
    print("\n== results (%s run, %.0f s)\n" % (mode, total))
    print_table(report)
    print("\nload average: %.2f %.2f %.2f at start, %.2f %.2f %.2f at the end (%s CPUs)" % (
        info["loadavg_at_start"] + info["loadavg_at_end"] + (info["nproc"],)))
    if report.notes:
        print("\nnotes:")
        for note in report.notes:
            print("- %s: %s" % (note["section"], note["text"]))
    missed = [row["measurement"].strip() for row in report.rows if row["met"] is False]
    print("\ntargets: %d met, %d missed%s" % (sum(1 for r in report.rows if r["met"]), len(missed),
                                             (" (" + "; ".join(missed) + ")") if missed else ""))
    for crash in report.crashes:
        print("CRASHED in section %s: %s" % (crash["section"], crash["error"]))


def machine(server):
    """The hardware and software versions, and the load when the run starts."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = dict(nproc=os.cpu_count(), cpus_usable=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else None, cpu_model=model, python=platform.python_version(), python_executable=sys.executable,
                kernel=platform.release(), sqlite=sqlite3.sqlite_version, pymysql=pymysql.__version__,
                loadavg_at_start=os.getloadavg())
    try:
        from importlib.metadata import version
        info["pyst2"] = version("pyst2")
    except Exception:
        info["pyst2"] = "?"
    try:
        mem = open("/proc/meminfo").readline().split()
        info["memory_gb"] = round(int(mem[1]) / 1024 / 1024, 1)
    except Exception:
        pass
    try:
        version, pool = server.version()
        info["mariadb"] = version
        info["innodb_buffer_pool_mb"] = int(pool) // (1024 * 1024)
    except Exception as error:
        info["mariadb"] = "unreachable: %s" % error
    return info


def print_machine(info, mode, server_kind):
    print("vipsticky benchmark (%s run), %s" % (mode, time.strftime("%Y-%m-%d %H:%M:%S %Z")))
    print("machine: %s CPUs (%s usable), %s, %s GB RAM, kernel %s" % (
        info["nproc"], info["cpus_usable"], info["cpu_model"], info.get("memory_gb", "?"), info["kernel"]))
    print("software: Python %s (%s), MariaDB %s (innodb_buffer_pool %s MB), SQLite %s, PyMySQL %s, pyst2 %s" % (
        info["python"], info["python_executable"], info["mariadb"], info.get("innodb_buffer_pool_mb", "?"),
        info["sqlite"], info["pymysql"], info["pyst2"]))
    print("load average at start: %.2f %.2f %.2f (the MariaDB server is %s)" % (
        info["loadavg_at_start"] + (server_kind,)))
