#!/usr/bin/env python3
"""vipsticky benchmarks: runs the measurement sections, prints the result table and writes it as JSON.

    python benchmarks/run.py                  # full run (about 10-15 minutes)
    python benchmarks/run.py --quick          # smoke test for CI (under a minute)
    python benchmarks/run.py --sections ab    # only some sections
    python benchmarks/run.py --json out.json  # where the JSON goes (default benchmarks/results.json)

MariaDB: --mysql URL (default $VIPSTICKY_BENCH_MYSQL, $VIPSTICKY_TEST_MYSQL or
mysql://root@127.0.0.1:3306/test); the user must be allowed to create databases.
Every database this creates is named vsbench_<pid>_<what> and dropped at the end.
--mysql private starts a throwaway server of its own instead (tests/private_mariadb.py).

Sections (issue 5, item 1), one module each:
  a  per_call.py: per-call wall time of vip_or_not and sticky_route lookup, spawned and
     driven like Asterisk drives them, beside the floor (a process that only imports pyst2
     and the database driver), interleaved; plus -X importtime: imports beyond the floor.
  b  addressbook_size.py: VIP lookup against PHP Address Book size (1k / 100k / 1M rows;
     --quick: 1k / 10k), beside the original LIKE '%...' query on the same data.
  c  purge_load.py: purge of 1,000,000 expired bindings (--quick: 20,000) while another
     connection looks bindings up back to back.
  d  fastagi_load.py: `vipsticky serve` as a separate process, 50 concurrent clients,
     beside the per-call throughput (spawned scripts, 2 workers).
  e  fastagi_workers.py: `vipsticky serve --workers 1` against `--workers 2`, 50 calls in
     progress back to back (throughput; target >= 1.6x with 2 workers on 2 cores).
Shared: report.py (statistics, the table), processes.py (spawning), databases.py (setup).

Spawned processes get a bytecode cache in the run's temp dir (PYTHONPYCACHEPREFIX, and no
PYTHONDONTWRITEBYTECODE), as an installed package has on an Asterisk box; section a also
reports vip_or_not without one. The load generator of section d runs in this process; the
server is a separate `vipsticky serve` process.

Exit status: 0 when everything ran (targets met or not), 1 when a section crashed.
"""
import argparse
import json
import os
import signal
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # a clean clone without `pip install .` still imports the package
sys.path.append(os.path.join(REPO, "tests"))  # the test suite's private_mariadb and addressbook_ddl

import addressbook_size  # noqa: E402  (after the path above)
import fastagi_load  # noqa: E402
import fastagi_workers  # noqa: E402
import per_call  # noqa: E402
import purge_load  # noqa: E402
from databases import PRIVATE, Workspace  # noqa: E402
from report import Phase, Report, machine, print_machine, print_results  # noqa: E402

DEFAULT_JSON = os.path.join(REPO, "benchmarks", "results.json")
SECTIONS = (("a", per_call), ("b", addressbook_size), ("c", purge_load), ("d", fastagi_load),
            ("e", fastagi_workers))


def main(argv=None):
    parser = argparse.ArgumentParser(description="vipsticky benchmarks (issue 5)")
    parser.add_argument("--quick", action="store_true", help="smoke test: small sizes, few repetitions (< 60 s)")
    parser.add_argument("--json", default=DEFAULT_JSON, metavar="PATH", help="JSON output (default %(default)s)")
    parser.add_argument("--sections", default="abcde", help="which sections to run (default abcde)")
    parser.add_argument("--mysql", default=os.environ.get("VIPSTICKY_BENCH_MYSQL") or
                        os.environ.get("VIPSTICKY_TEST_MYSQL") or "mysql://root@127.0.0.1:3306/test",
                        help="MariaDB server URL (a database name is required but not used), or %r: "
                             "a throwaway server of its own" % PRIVATE)
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"

    def terminate(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, terminate)

    report = Report()
    workspace = Workspace(args.mysql)
    started = time.monotonic()
    try:
        info = machine(workspace.server)
        print_machine(info, mode, "private" if args.mysql == PRIVATE else "shared")
        if not workspace.children.installed:
            print("note: console scripts not installed beside %s; using python -m agi_scripts.*" % sys.executable)
        for letter, section in SECTIONS:
            if letter in args.sections:
                run_section(report, workspace, args.quick, letter, section)
    finally:
        workspace.cleanup()
    total = time.monotonic() - started
    info["loadavg_at_end"] = os.getloadavg()
    print_results(report, info, mode, total)
    document = dict(mode=mode, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), total_seconds=round(total, 1),
                    machine=info, command=" ".join([os.path.relpath(os.path.abspath(sys.argv[0]), REPO)] + (
                        argv if argv is not None else sys.argv[1:])),
                    results=report.rows, notes=report.notes, phases=report.phases, details=report.details,
                    crashes=report.crashes)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(document, handle, indent=1, ensure_ascii=False, default=str)
    print("JSON written to %s" % args.json)
    return 1 if report.crashes else 0


def run_section(report, workspace, quick, letter, section):
    """One section; a crash is recorded in the report and the run goes on."""
    print("\n== %s. %s" % (letter, section.TITLE), flush=True)
    with Phase(report, "section %s total" % letter):
        try:
            section.measure(report, workspace, quick)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:
            text = traceback.format_exc()
            print(text, file=sys.stderr)
            report.crashes.append(dict(section=letter, error="%s: %s" % (type(error).__name__, error),
                                       traceback=text))


if __name__ == "__main__":
    sys.exit(main())
