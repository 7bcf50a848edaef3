"""`vipsticky serve --workers N` (issue 13, Deliver 3): N processes forked by a supervisor
share the listening socket, so calls use every core despite Python's GIL.

A real `vipsticky serve` subprocess, real sockets, SQLite (the database is not under test):
the calls spread over the workers; SIGHUP to the supervisor alone switches every worker to
the new config before its one log line; SIGTERM lets each worker finish its call in flight;
a killed worker is replaced; workers whose supervisor was killed stop by themselves; the
default is one worker per core; --pool is shared out.
"""
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from agi_scripts.asterisk_standin import Asterisk
from utils import AGENT, AllIdle, CallInFlight, Served, events_ini

IDLE = Asterisk(devices=AllIdle())


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_calls_spread_over_the_workers(sqlite):
    sqlite.database().remember("79120000001", "", AGENT, 600)
    with Served(sqlite, "--workers", "2", "--pool", "4") as served:
        assert "2 worker processes, each with a pool of 2 database connections" in served.log[0], served.log
        workers = served.workers()
        assert len(workers) == 2, workers
        before = {pid: cpu_seconds(pid) for pid in workers}
        with ThreadPoolExecutor(max_workers=8) as pool:
            calls = list(pool.map(lambda _: served.call("lookup"), range(400)))
        used = {pid: cpu_seconds(pid) - before[pid] for pid in workers}
        assert all(call.variables["STICKY_AGENT"] == AGENT for call in calls)
        print("\nCPU seconds per worker for 400 calls: %s" % sorted(used.values()))
        assert all(seconds > 0.02 for seconds in used.values()), used  # both answered calls
        served.stop()
    assert served.log[-1] == "vipsticky serve: stopped" and len(served.log) == 2, served.log
    assert not any(alive(pid) for pid in workers)


def test_sighup_to_the_supervisor_switches_every_worker(make_setup):
    old, new = make_setup("sqlite"), make_setup("sqlite")
    old.database().remember("79120000001", "", "PJSIP/alena", 600)
    new.database().remember("79120000001", "", "PJSIP/boris", 600)
    with Served(old, "--workers", "2") as served:
        assert {served.call("lookup").variables["STICKY_AGENT"] for _ in range(20)} == {"PJSIP/alena"}
        with open(old.path, "w") as handle:
            handle.write("[database]\nurl = %s\n%s" % (new.url, events_ini(os.path.dirname(old.path))))
        served.process.send_signal(signal.SIGHUP)
        served.wait_for("reloaded")
        # Every worker switched before the line was logged: no call gets the old database.
        assert {served.call("lookup").variables["STICKY_AGENT"] for _ in range(40)} == {"PJSIP/boris"}
        with open(old.path, "w") as handle:
            handle.write("[database]\nurl = %s\nbogus = 1\n%s" % (old.url, events_ini(os.path.dirname(old.path))))
        served.process.send_signal(signal.SIGHUP)
        served.wait_for("reload refused")
        assert {served.call("lookup").variables["STICKY_AGENT"] for _ in range(20)} == {"PJSIP/boris"}
        served.stop()
    assert [line for line in served.log if "reload" in line][0].startswith("vipsticky serve: reloaded ")
    assert len([line for line in served.log if "reload" in line]) == 2  # one line each, not one per worker


def test_sigterm_lets_every_worker_finish_its_call_in_flight(sqlite):
    sqlite.database().remember("79120000001", "", AGENT, 600)
    with Served(sqlite, "--workers", "2") as served:
        workers = served.workers()
        in_flight = [CallInFlight(served.address) for _ in range(2)]
        for call in in_flight:
            assert call.first.startswith('SET VARIABLE "STICKY_DIAL_TIMEOUT"'), call.first
        served.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert served.process.poll() is None  # waits for the calls in flight
        for call in in_flight:
            assert call.finish(IDLE).variables["STICKY_AGENT"] == AGENT
        assert served.process.wait(timeout=30) == 0
    assert served.log[-1] == "vipsticky serve: stopped", served.log
    assert not any(alive(pid) for pid in workers)


def test_a_killed_worker_is_replaced_and_an_orphan_stops(sqlite):
    sqlite.database().remember("79120000001", "", AGENT, 600)
    with Served(sqlite, "--workers", "2") as served:
        first, second = served.workers()
        os.kill(first, signal.SIGKILL)
        served.wait_for(r"worker \d \(pid %d\) ended \(signal 9\): starting another" % first)
        deadline = time.monotonic() + 10
        while len(served.workers()) < 2:
            assert time.monotonic() < deadline, served.workers()
            time.sleep(0.05)
        assert first not in served.workers() and second in served.workers()
        assert {served.call("lookup").variables["STICKY_AGENT"] for _ in range(20)} == {AGENT}
        workers = served.workers()
        served.process.kill()  # the supervisor crashes: its workers stop by themselves
        served.process.wait()
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "workers still running 15 s after their supervisor died"
            time.sleep(0.05)


def test_the_default_is_one_worker_per_core(sqlite):
    with Served(sqlite) as served:
        cores = len(os.sched_getaffinity(0))
        if cores > 1:
            assert "%d worker processes" % cores in served.log[0], served.log
        assert len(served.workers()) == (cores if cores > 1 else 0)
        served.stop()


def test_a_sigterm_at_any_moment_stops_the_server(sqlite):
    """A signal can land while the main thread holds a lock (inside a threading.Event's
    wait); a handler that set that Event waited for it forever, and so did the server
    (4 in 40 stops right after the start hung). Each of 32 starts, stopped at once, ends
    within seconds."""
    for workers in ("1", "4") * 16:
        with Served(sqlite, "--workers", workers) as served:
            assert served.stop(limit=5) < 5


@pytest.mark.parametrize("options, line", [
    (["--workers", "1", "--pool", "3"], "(pool of 3 database connections"),
    (["--workers", "3", "--pool", "8"], "(3 worker processes, each with a pool of 2 database connections"),
    (["--workers", "4", "--pool", "2"], "(4 worker processes, each with a pool of 1 database connections"),
])
def test_pool_is_shared_out(sqlite, options, line):
    with Served(sqlite, *options) as served:
        assert line in served.log[0], served.log
        served.stop()
