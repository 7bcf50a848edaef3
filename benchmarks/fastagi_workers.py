"""Section e: `vipsticky serve --workers 1` against `--workers 2`, 50 calls in progress back to back.

One server process is held near one core by Python's GIL whatever the machine has; workers
share the listening socket and use the other cores. The load generator is one thread with
an event loop (selectors): 50 threads of blocking clients would themselves fight over a GIL
and take a good part of the second core on this 2-core machine. The two server shapes take
turns (1, 2, 1, 2, ...) so that a change of machine load hits both alike.
"""
import os
import selectors
import socket
import time

from databases import HIT_NUMBER, seed_caller
from fastagi_load import raw_env
from processes import Server
from report import Phase, summary

TITLE = "FastAGI workers: throughput with 1 and 2 worker processes"
CLIENTS = 50
TARGET = 1.6  # calls/s with 2 workers / with 1, on 2 cores


def back_to_back(address, payload, concurrency, total):
    """`concurrency` FastAGI calls in progress at every moment until `total` are done, each
    answering "200 result=1" to every command. Returns (seconds, latencies, failures)."""
    selector = selectors.DefaultSelector()
    reply = b"200 result=1\n"
    latencies, failures = [], []
    counts = {"started": 0}

    def start():
        started = time.perf_counter()
        connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.connect(address)  # loopback: the server's backlog completes it at once
        connection.setblocking(False)
        connection.sendall(payload)
        # [started at, partial line, commands seen]
        selector.register(connection, selectors.EVENT_READ, [started, b"", 0])
        counts["started"] += 1

    begun = time.perf_counter()
    for _ in range(min(concurrency, total)):
        start()
    while len(latencies) < total:
        events = selector.select(10)
        if not events:
            raise RuntimeError("no FastAGI progress for 10 s (%d of %d calls done)" % (len(latencies), total))
        for key, _ in events:
            connection, state = key.fileobj, key.data
            try:
                data = connection.recv(65536)
            except OSError as error:
                data = b""
                failures.append("%s: %s" % (type(error).__name__, error))
            if data:
                buffered = state[1] + data
                lines = buffered.count(b"\n")
                state[1] = buffered[buffered.rfind(b"\n") + 1:] if lines else buffered
                if lines:
                    state[2] += lines
                    connection.sendall(reply * lines)
                continue
            selector.unregister(connection)
            connection.close()
            if state[2] < 3:
                failures.append("a call ended after %d commands" % state[2])
            latencies.append(time.perf_counter() - state[0])
            if counts["started"] < total:
                start()
    selector.close()
    return time.perf_counter() - begun, latencies, failures


def measure(report, workspace, quick):
    payload = raw_env(HIT_NUMBER)
    rounds, calls = (2, 1000) if quick else (5, 6000)
    cores = len(os.sched_getaffinity(0))
    for label, dialect in (("MariaDB", "mysql"), ("SQLite", "sqlite")):
        path, config = workspace.setup("workers_" + dialect, dialect)
        seed_caller(config)
        env = workspace.env(path)
        rates = {1: [], 2: []}
        latencies = {1: [], 2: []}
        cpu = {1: [0.0, 0.0, 0], 2: [0.0, 0.0, 0]}  # server CPU s, generator CPU s, calls
        with Phase(report, "e: %d rounds x (1 worker, 2 workers) x %d calls (%s)" % (rounds, calls, label)):
            for _ in range(rounds):
                for workers in (1, 2):
                    server = Server(env, workers)
                    try:
                        back_to_back(server.address, payload, 8, 200)  # the pools' connections open
                        server_before, before = server.cpu(), os.times()
                        seconds, done, failures = back_to_back(server.address, payload, CLIENTS, calls)
                        server_after, after = server.cpu(), os.times()
                    finally:
                        code, _ = server.stop()
                    if failures:
                        raise RuntimeError("%d FastAGI calls failed with --workers %d, first: %s"
                                           % (len(failures), workers, failures[0]))
                    if code != 0:
                        raise RuntimeError("vipsticky serve --workers %d exited %s: %s" % (workers, code, server.log))
                    rates[workers].append(len(done) / seconds)
                    latencies[workers].extend(done)
                    cpu[workers][0] += server_after - server_before
                    cpu[workers][1] += (after.user - before.user) + (after.system - before.system)
                    cpu[workers][2] += len(done)
        for workers in (1, 2):
            report.row("e", "FastAGI %d back to back, --workers %d: calls/s, %s" % (CLIENTS, workers, label),
                       "calls/s", summary(rates[workers]), p99=False)
            report.row("e", "  latency, --workers %d, %s" % (workers, label), "ms", summary(latencies[workers]))
        ratio = summary(rates[2])["median"] / summary(rates[1])["median"]
        report.ratio("e", "  ratio --workers 2 / --workers 1, %s" % label, ratio, unit="x",
                     target=">= %.1f" % TARGET, met=ratio >= TARGET)
        for workers in (1, 2):
            server_cpu, generator_cpu, total = cpu[workers]
            report.note("e", "%s, --workers %d: server CPU %.2f ms per call, load generator %.2f ms per call "
                        "(one thread); %d cores here" % (label, workers, 1000 * server_cpu / total,
                                                         1000 * generator_cpu / total, cores))
        report.details.setdefault("e", {})[label] = dict(
            rates={workers: summary(rates[workers]) for workers in (1, 2)}, ratio=ratio,
            cpu_ms_per_call={workers: dict(server=1000 * cpu[workers][0] / cpu[workers][2],
                                           generator=1000 * cpu[workers][1] / cpu[workers][2])
                             for workers in (1, 2)})
        print("  %s: --workers 1 %.0f calls/s, --workers 2 %.0f calls/s: %.2fx (target >= %.1fx)"
              % (label, summary(rates[1])["median"], summary(rates[2])["median"], ratio, TARGET), flush=True)
        workspace.drop("workers_" + dialect, dialect)
