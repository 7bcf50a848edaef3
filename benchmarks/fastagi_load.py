"""Section d: `vipsticky serve` under 50 concurrent FastAGI clients, against per-call scripts' throughput."""
import os
import random
import socket
import threading
import time

from agi_scripts.asterisk_standin import Peer, script_command
from databases import HIT_NUMBER, seed_caller
from processes import Server
from report import Phase, summary

TITLE = "FastAGI throughput"
CLIENTS = 50


def raw_env(number):
    env = Peer.environment("vip_or_not", [number], "", network=True)
    return ("".join("%s: %s\n" % item for item in env) + "\n").encode("utf-8")


def raw_call(address, payload, record=None):
    """A lean FastAGI client: the environment in one write, then "200 result=1" to each
    command until the server closes. Returns the number of commands."""
    with socket.create_connection(address, timeout=10) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.sendall(payload)
        reader = connection.makefile("rb")
        count = 0
        while True:
            line = reader.readline()
            if not line:
                break
            if record is not None:
                record.append(line.decode("utf-8", "replace").rstrip("\n"))
            connection.sendall(b"200 result=1\n")
            count += 1
        reader.close()
        return count


def load_run(server, clients, calls, kind, payload):
    """`clients` threads each making `calls` back-to-back calls; returns (calls/s, latencies,
    client CPU s, server CPU s, failures)."""
    latencies = [[] for _ in range(clients)]
    failures = []
    barrier = threading.Barrier(clients + 1)

    def client(index):
        mine = latencies[index]
        peer = Peer()
        barrier.wait()
        for _ in range(calls):
            started = time.perf_counter()
            try:
                if kind == "raw":
                    if raw_call(server.address, payload) < 3:
                        failures.append("short call")
                else:
                    call = peer.call_fastagi(server.address, "vip_or_not", [HIT_NUMBER], timeout=10)
                    if call.variables.get("QUEUE_PRIO") != "10":
                        failures.append("QUEUE_PRIO %r" % call.variables.get("QUEUE_PRIO"))
            except Exception as error:
                failures.append("%s: %s" % (type(error).__name__, error))
            mine.append(time.perf_counter() - started)
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    cpu_before, server_before = os.times(), server.cpu()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu_after, server_after = os.times(), server.cpu()
    client_cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    flat = [value for values in latencies for value in values]
    return len(flat) / elapsed, flat, client_cpu, server_after - server_before, failures


def open_loop_run(server, clients, rate, duration, payload):
    """`clients` threads whose calls arrive at random (exponential gaps) so that together
    they offer `rate` calls/s: a call centre's calls do not wait for each other. Latency
    counts from each call's scheduled start, so time spent queued behind a late call
    counts too. Returns (latencies, failures)."""
    per_client = rate / clients
    latencies, failures = [], []
    started = time.perf_counter()
    deadline = started + duration

    def client(index):
        rng = random.Random(index)
        due = started + rng.expovariate(per_client)
        while due < deadline:
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                if raw_call(server.address, payload) < 3:
                    failures.append("short call")
            except Exception as error:
                failures.append("%s: %s" % (type(error).__name__, error))
            latencies.append(time.perf_counter() - due)
            due += rng.expovariate(per_client)
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failures


def percall_throughput(env, calls, workers=2):
    """`workers` threads each spawning `calls` vip_or_not scripts back to back; (calls/s, latencies)."""
    command = script_command("vip_or_not")
    done = []
    failures = []

    def worker():
        for _ in range(calls):
            call = Peer().run_script("vip_or_not", [HIT_NUMBER], process_env=env, command=command)
            if call.variables.get("QUEUE_PRIO") != "10":
                failures.append(call.stderr[-300:])
            done.append(call.elapsed)
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError("per-call vip_or_not failed: %s" % failures[0])
    return len(done) / elapsed, done


def measure(report, workspace, quick):
    payload = raw_env(HIT_NUMBER)
    for label, dialect in (("MariaDB", "mysql"), ("SQLite", "sqlite")):
        path, config = workspace.setup("fastagi_" + dialect, dialect)
        seed_caller(config)
        env = workspace.env(path)
        percall = measure_percall(report, env, label, quick)
        server = Server(env)
        try:
            check_server(server, payload)
            for _ in range(3):  # open the pool's connections
                load_run(server, 8, 5, "raw", payload)
            single = load_run(server, 1, 100 if quick else 400, "raw", payload)[1]
            report.row("d", "FastAGI 1 client (raw), latency, %s" % label, "ms", summary(single))
            raw_rate = measure_saturation(report, server, payload, label, quick, percall)
            measure_open_loop(report, server, payload, label, quick, raw_rate / 2)
        finally:
            code, stop_seconds = server.stop()
        failures = [line for line in server.log if "listening" not in line and "stopped" not in line]
        report.note("d", "%s: vipsticky serve stopped on SIGTERM with exit code %s in %.2f s; %d failure log "
                    "line(s)%s" % (label, code, stop_seconds, len(failures),
                                   (": " + failures[0]) if failures else ""))
        report.details.setdefault("d", {}).setdefault(label, {})["server_exit"] = code
        workspace.drop("fastagi_" + dialect, dialect)


def measure_percall(report, env, label, quick):
    """The per-call scripts' throughput with 2 workers: the figure FastAGI is compared with."""
    reps, calls = (1, 8) if quick else (3, 30)
    with Phase(report, "d: per-call throughput, 2 workers, %d x %d calls (%s)" % (reps, 2 * calls, label)):
        rates, latencies = [], []
        for _ in range(reps):
            rate, done = percall_throughput(env, calls)
            rates.append(rate)
            latencies.extend(done)
    percall = summary(rates)
    report.row("d", "per-call scripts, 2 workers: vip_or_not calls/s, %s" % label, "calls/s", percall, p99=False)
    report.row("d", "  per-call latency with 2 workers, %s" % label, "ms", summary(latencies))
    return percall


def check_server(server, payload):
    """The server answers both clients with the VIP's priority."""
    record = []
    raw_call(server.address, payload, record)
    if not any('QUEUE_PRIO' in line and '"10"' in line for line in record):
        raise RuntimeError("FastAGI vip_or_not did not set QUEUE_PRIO 10: %r" % record)
    check = Peer().call_fastagi(server.address, "vip_or_not", [HIT_NUMBER])
    if check.variables.get("QUEUE_PRIO") != "10":
        raise RuntimeError("FastAGI (Peer) vip_or_not: %r" % check.variables)


def measure_saturation(report, server, payload, label, quick, percall):
    """CLIENTS clients calling back to back, with each client; returns the raw client's calls/s."""
    calls = 10 if quick else 40
    reps = 2 if quick else 5
    fast_rates = {}
    for kind, title in (("raw", "lean raw-socket client"), ("peer", "Peer.call_fastagi client")):
        rates, flat, client_cpu, server_cpu, failures, wall = [], [], 0.0, 0.0, [], 0.0
        with Phase(report, "d: FastAGI %s, %d clients x %d calls x %d runs (%s)" % (kind, CLIENTS, calls, reps, label)):
            for _ in range(reps):
                rate, lat, c_cpu, s_cpu, fail = load_run(server, CLIENTS, calls, kind, payload)
                rates.append(rate)
                flat.extend(lat)
                wall += len(lat) / rate
                client_cpu += c_cpu
                server_cpu += s_cpu
                failures.extend(fail)
        raise_failures(failures)
        stats = summary(rates)
        lat = summary(flat)
        fast_rates[kind] = stats["median"]
        report.row("d", "FastAGI %d concurrent (%s): calls/s, %s" % (CLIENTS, title, label), "calls/s", stats,
                   p99=False)
        report.row("d", "  FastAGI latency, %d clients back to back (saturated: %s), %s" % (CLIENTS, title, label),
                   "ms", lat)
        ratio = stats["median"] / percall["median"]
        report.ratio("d", "  ratio FastAGI (%s) / per-call throughput, %s" % (kind, label), ratio, unit="x",
                     target=">= 20", met=ratio >= 20)
        total = len(flat)
        per_call = dict(server_cpu_ms=1000 * server_cpu / total, client_cpu_ms=1000 * client_cpu / total,
                        calls=total, server_cores=server_cpu / wall, client_cores=client_cpu / wall)
        report.details.setdefault("d", {}).setdefault(label, {})[kind] = dict(rates=stats, latency=lat, **per_call)
        report.note("d", "%s, %s: CPU per call: server %.2f ms, load generator %.2f ms; busy CPUs while "
                    "loaded: server %.2f, load generator %.2f (this machine has %d; one Python process is "
                    "held near 1 by its GIL); Little's law: %d in flight / %.0f calls/s = %.1f ms mean "
                    "latency." % (
                        label, title, per_call["server_cpu_ms"], per_call["client_cpu_ms"],
                        per_call["server_cores"], per_call["client_cores"],
                        os.cpu_count(), CLIENTS, stats["median"], 1000 * CLIENTS / stats["median"]))
    return fast_rates["raw"]


def measure_open_loop(report, server, payload, label, quick, offered):
    """The target: 50 calls in progress at once, arriving independently at `offered` calls/s
    (half the capacity: a back-to-back loop only measures the saturation point, where
    latency = clients / throughput by Little's law)."""
    with Phase(report, "d: FastAGI open loop, %d clients, %.0f calls/s offered (%s)" % (CLIENTS, offered, label)):
        lat_open, failures = open_loop_run(server, CLIENTS, offered, 3 if quick else 15, payload)
    raise_failures(failures)
    open_stats = summary(lat_open)
    report.row("d", "FastAGI latency, %d concurrent clients, random arrivals at %.0f calls/s, %s"
               % (CLIENTS, offered, label), "ms", open_stats, target="p99 <= 10 ms", met=open_stats["p99"] <= 0.010)
    report.details.setdefault("d", {}).setdefault(label, {})["open_loop"] = dict(
        offered_calls_per_s=offered, latency=open_stats)


def raise_failures(failures):
    if failures:
        raise RuntimeError("%d FastAGI calls failed, first: %s" % (len(failures), failures[0]))
