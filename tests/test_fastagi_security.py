"""FastAGI as an attacker sees it (security issue, item 2): `vipsticky serve` is a real
subprocess, spoken to over real sockets on 127.0.0.1, with real MariaDB and SQLite.

Each test is one attack that version 0.1 let through:

- listening beyond loopback without an allowlist, and clients outside the allowlist;
- 300 idle connections (0.1: 300 threads) beside a real call, and a cap on connections;
- clients that trickle bytes (0.1: a 60 s timeout per read, so forever);
- a 100 MB line and 100,000 environment lines (0.1: buffered whole, accepted);
- a stalled database with --pool 2 (0.1: one more connection per waiting call);
- after all of it, stderr holds only one line per event, never a traceback.

Loopback is 127.0.0.0/8: a client bound to 127.0.0.2 is another host to the server.
"""
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

from agi_scripts.asterisk_standin import Call, Peer
from agi_scripts.fastagi import MAX_ENVIRONMENT_LINES, MAX_LINE, ServeError, make_server
from utils import (NUMBER, Served, assert_clean, assert_failed_open, assert_one_error_line, server_connection,
                   vipsticky)

KEY = "79120000001"  # NUMBER's key
VIP = {"QUEUE_PRIO": "20", "VIP": "1", "VIP_LABEL": "Gold"}
ANSWERED_WITHIN = 2.0  # seconds for a real call beside the idle connections (the figure)
MEMORY_GROWTH_LIMIT = 32 * 1024  # kB of peak resident memory a hostile client may add to the server


def add_vip(setup):
    database = setup.database()
    database.vip_add(KEY, 20, "Gold")
    database.close()


def environment(script="vip_or_not", args=(NUMBER,)) -> bytes:
    """A real call's environment, as res_agi sends it to a FastAGI server."""
    pairs = Peer.environment(script, list(args), "", network=True)
    return ("".join("%s: %s\n" % pair for pair in pairs) + "\n").encode()


def real_call(address, timeout=10):
    """A vip_or_not call for NUMBER through Asterisk's stand-in."""
    return Peer().call_fastagi(address, "vip_or_not", [NUMBER], callerid=NUMBER, timeout=timeout)


def call_from(source, address):
    """A vip_or_not call from another loopback address (Peer.call_fastagi takes none)."""
    call = Call(script="vip_or_not", args=[NUMBER])
    with socket.create_connection(address, timeout=10, source_address=(source, 0)) as connection:
        with connection.makefile("rb") as reader, connection.makefile("wb") as writer:
            Peer().converse(call, Peer.environment("vip_or_not", [NUMBER], NUMBER, network=True), reader, writer)
    call.exit_code = 0  # as call_fastagi says: nothing to exit
    return call


def closed_within(connection, seconds) -> bool:
    """True when the server closes (or resets) the connection within `seconds`, reading
    and discarding whatever it sends before."""
    end = time.monotonic() + seconds
    while True:
        ready, _, _ = select.select([connection], [], [], max(0.0, end - time.monotonic()))
        if ready:
            try:
                if not connection.recv(65536):
                    return True
            except OSError:
                return True
        elif time.monotonic() >= end:
            return False


def send_until_closed(connection, chunks) -> int:
    """Send the chunks until the server closes; the bytes sent."""
    sent = 0
    for chunk in chunks:
        try:
            connection.sendall(chunk)
        except OSError:  # reset or broken pipe: the server closed
            return sent
        sent += len(chunk)
    return sent


# -- who may connect ------------------------------------------------------------------------------
@pytest.mark.parametrize("options, says", [
    (["--listen", "0.0.0.0:0"], "needs the clients allowed to connect: --allow"),
    (["--listen", "0.0.0.0:0", "--allow", "10.0.0.1/8"], "has host bits set"),
    (["--listen", "0.0.0.0:0", "--allow", "10.0.0.0/8,not-an-address"], "not-an-address is not a client address"),
    (["--listen", "127.0.0.1:0", "--allow", "300.1.2.3"], "300.1.2.3 is not a client address"),
])
def test_serve_refuses_to_start_open_to_all(make_setup, options, says):
    """0.1 served anyone who reached --listen 0.0.0.0 (this test then times out)."""
    setup = make_setup("sqlite")
    try:
        result = vipsticky(setup, "serve", *options, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("vipsticky serve %s started instead of refusing" % " ".join(options))
    assert_one_error_line(result, options)
    assert says in result.stderr, result.stderr


def test_config_allowlist_and_make_server(make_setup):
    """[fastagi] allow opens a non-loopback address; make_server keeps its signature and
    raises ServeError where the CLI says one line."""
    log = []
    bare = make_setup("sqlite")
    with pytest.raises(ServeError, match="needs the clients allowed"):
        make_server(bare.config, "0.0.0.0", 0, 2, log.append)
    with pytest.raises(ServeError, match="is not a client address"):
        make_server(bare.config, "127.0.0.1", 0, 2, log.append, allow=["10.0.0.0/33"])
    setup = make_setup("sqlite", "[fastagi]\nallow = 192.0.2.0/24, 127.0.0.2\n")
    server = make_server(setup.config, "0.0.0.0", 0, 2, log.append, max_connections=5, deadline=3)
    assert [str(network) for network in server.allow] == ["192.0.2.0/24", "127.0.0.2/32"]
    assert (server.limits.max_connections, server.limits.deadline) == (5, 3)
    server.server_close()
    assert log == []


def test_clients_outside_the_allowlist_are_closed_at_once(make_setup):
    """With --allow 127.0.0.2, a call from 127.0.0.1 gets no command, is closed at once
    and costs one log line; the allowed client is answered."""
    setup = make_setup("sqlite")
    add_vip(setup)
    with Served(setup, "--allow", "127.0.0.2") as server:
        refused = []
        for _ in range(20):
            started = time.monotonic()
            with socket.create_connection(server.address, timeout=5) as connection:
                send_until_closed(connection, [environment()])
                assert closed_within(connection, 1.0), "a client outside the allowlist was kept"
            refused.append(time.monotonic() - started)
        lines = server.wait_for(r"refused 127\.0\.0\.1:\d+: not an allowed client", count=20)
        call = call_from("127.0.0.2", server.address)
        assert_clean(call)
        assert call.variables == VIP, call
        assert len(lines) == 20, server.log
        server.stop()
    assert max(refused) < 0.5, refused


def test_listening_beyond_loopback_with_an_allowlist(make_setup):
    """--listen 0.0.0.0 with --allow: the listed client is answered, the others closed."""
    setup = make_setup("sqlite")
    add_vip(setup)
    with Served(setup, "--listen", "0.0.0.0:0", "--allow", "127.0.0.2/32") as server:
        assert server.log[0].startswith("vipsticky serve: listening on 0.0.0.0:"), server.log
        assert "clients: 127.0.0.2/32" in server.log[0]
        assert call_from("127.0.0.2", server.address).variables == VIP
        call = real_call(server.address)
        assert call.commands == [] and call.variables == {}, call
        assert len(server.wait_for("refused 127.0.0.1:")) == 1, server.log
        server.stop()


# -- connections -----------------------------------------------------------------------------------
def test_idle_connections_do_not_keep_a_real_call_out(setup, record_property):
    """300 idle connections (half silent, half with a started environment) from one local
    client, then a real call: answered within 2 s by a server that still runs a handful
    of threads (0.1: one thread per idle connection)."""
    add_vip(setup)
    with Served(setup, "--workers", "1") as server:  # --max-connections is each worker's
        real_call(server.address)  # the pool's connection is open: the figure is the idle ones' cost
        idle = []
        try:
            for index in range(300):
                connection = socket.create_connection(server.address, timeout=5)
                if index % 2:
                    connection.sendall(b"agi_network: yes\nagi_network_scr")
                idle.append(connection)
            time.sleep(0.3)  # let the server take them all in
            threads = server.status("Threads")
            call = real_call(server.address, timeout=5)
            assert_clean(call)
            assert call.variables == VIP, call
            assert call.elapsed < ANSWERED_WITHIN, "answered after %.2f s" % call.elapsed
            still_open = sum(not closed_within(connection, 0) for connection in idle)
        finally:
            for connection in idle:
                connection.close()
        dropped = server.wait_for("--max-connections", count=201)
        record_property("real_call_seconds", round(call.elapsed, 4))
        record_property("server_threads_with_300_idle", threads)
        print("\n%s: real call answered in %.1f ms beside 300 idle connections; server threads %d, "
              "idle connections still open %d, dropped %d" % (setup.dialect, call.elapsed * 1000, threads,
                                                               still_open, len(dropped)))
        assert threads <= 5, threads
        assert still_open <= 100 and len(dropped) >= 200, (still_open, len(dropped))
        assert all("dropped 127.0.0.1:" in line for line in dropped), dropped[:3]
        server.stop()


def test_connection_cap_holds_with_calls_in_progress(make_setup):
    """--max-connections 3 with 3 calls that never answer a command: a 4th connection is
    closed at once (one log line), and a real call is answered when one has gone."""
    setup = make_setup("sqlite")
    add_vip(setup)
    with Served(setup, "--max-connections", "3", "--workers", "1") as server:  # the cap is each worker's
        stalled = []
        for _ in range(3):
            connection = socket.create_connection(server.address, timeout=5)
            connection.sendall(environment())
            assert connection.recv(65536).startswith(b"SET VARIABLE")  # its call is in progress
            stalled.append(connection)
        with socket.create_connection(server.address, timeout=5) as extra:
            assert closed_within(extra, 1.0), "a 4th connection was kept beside 3 calls"
        assert len(server.wait_for(r"refused 127\.0\.0\.1:\d+: 3 calls in progress \(--max-connections\)")) == 1
        stalled.pop().close()
        time.sleep(0.2)
        call = real_call(server.address)
        assert call.variables == VIP, (call, server.log)
        for connection in stalled:
            connection.close()
        server.stop()


def test_trickling_clients_are_cut_off_by_the_deadline(make_setup):
    """A byte every 2 s, in the environment or in a reply to a command: closed at the
    connection's deadline (0.1: a 60 s timeout per read, so never)."""
    setup = make_setup("sqlite")
    with Served(setup, "--deadline", "3") as server:
        results = {}

        def trickle(name, before=b""):
            started = time.monotonic()
            with socket.create_connection(server.address, timeout=5) as connection:
                if before:
                    connection.sendall(before)
                    assert connection.recv(65536)  # the first command
                for byte in (b"200 " if before else b"agi_"):  # 8 s at most: the deadline is 3 s
                    if send_until_closed(connection, [bytes([byte])]) == 0 or closed_within(connection, 2.0):
                        results[name] = time.monotonic() - started
                        return
            results[name] = None

        threads = [threading.Thread(target=trickle, args=("environment",)),
                   threading.Thread(target=trickle, args=("reply", environment()))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert results.get("environment") and 2.5 < results["environment"] < 4.5, results
        assert results.get("reply") and 2.5 < results["reply"] < 4.5, results
        assert len(server.wait_for(r"dropped 127\.0\.0\.1:\d+: no complete environment within 3 s")) == 1, server.log
        assert len(server.wait_for(r"cut off 127\.0\.0\.1:\d+: still open at its deadline \(3 s\)")) == 1, server.log
        server.stop()


def test_sigterm_finishes_calls_in_flight_and_waits_no_longer_than_the_deadline(make_setup):
    """SIGTERM while a slow but honest call is in progress and a client trickles: the
    call gets all its variables, the trickler is cut, the server exits 0 within the
    deadline."""
    setup = make_setup("sqlite")
    add_vip(setup)
    with Served(setup, "--deadline", "3") as server:
        with socket.create_connection(server.address, timeout=5) as honest, \
                socket.create_connection(server.address, timeout=5) as trickler:
            trickler.sendall(environment())
            honest.sendall(environment())
            first = honest.recv(65536)
            assert first.startswith(b"SET VARIABLE"), first
            trickler.recv(65536)
            trickler.sendall(b"2")
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # SIGTERM has arrived; the call goes on
            received = [first]
            reader = honest.makefile("rb")
            for _ in range(2):
                honest.sendall(b"200 result=1\n")
                received.append(reader.readline())
            honest.sendall(b"200 result=1\n")
            assert reader.readline() == b""  # the call ended, the server closed it
            reader.close()
            server.stop(limit=4.5)  # a second SIGTERM changes nothing
            seconds = time.monotonic() - started
    assert [line.split(b" ")[2] for line in received] == [b'"QUEUE_PRIO"', b'"VIP"', b'"VIP_LABEL"'], received
    assert seconds < 4.5, seconds
    assert len([line for line in server.log if "still open at its deadline (3 s)" in line]) == 1, server.log


# -- sizes ---------------------------------------------------------------------------------------------
def test_long_lines_and_huge_environments_are_refused(make_setup, record_property):
    """A 100 MB line without a newline (in the environment and in a reply) and 100,000
    agi_arg_N lines: closed after a bounded read, one log line each, the server's peak
    memory barely moves (0.1 buffered the 100 MB and answered the 100,000 arguments)."""
    setup = make_setup("sqlite")
    add_vip(setup)
    megabyte = b"7" * (1024 * 1024)
    with Served(setup) as server:
        real_call(server.address)  # the server's memory at work, before the attacks
        peak_before = server.status("VmHWM")
        sent = {}
        with socket.create_connection(server.address, timeout=10) as connection:
            sent["environment line"] = send_until_closed(connection, [b"agi_network: yes\nagi_callerid: "] +
                                                         [megabyte] * 100)
            assert closed_within(connection, 2.0)
        with socket.create_connection(server.address, timeout=10) as connection:
            connection.sendall(environment())
            assert connection.recv(65536).startswith(b"SET VARIABLE")
            sent["reply line"] = send_until_closed(connection, [b"200 result=1 ("] + [megabyte] * 100)
            assert closed_within(connection, 2.0)
        lines = b"".join(b"agi_arg_%d: 79120000001\n" % number for number in range(1, 100001))
        with socket.create_connection(server.address, timeout=10) as connection:
            head = environment()[:-1]  # all but the empty line that ends it
            sent["100,000 arguments"] = send_until_closed(
                connection, [head] + [lines[start:start + 65536] for start in range(0, len(lines), 65536)] + [b"\n"])
            assert closed_within(connection, 2.0)  # and no command came: 0.1 answered the call
        peak_after = server.status("VmHWM")
        record_property("bytes_sent_before_close", sent)
        record_property("server_peak_memory_growth_kb", peak_after - peak_before)
        print("\nbytes sent before the server closed: %s; server peak memory %d -> %d kB"
              % (sent, peak_before, peak_after))
        # What was sent before the close showed is what loopback's socket buffers hold (about 10 MB).
        assert sent["environment line"] < 16 * len(megabyte) and sent["reply line"] < 16 * len(megabyte), sent
        assert peak_after - peak_before < MEMORY_GROWTH_LIMIT, (peak_before, peak_after)
        assert len(server.wait_for(r"dropped 127\.0\.0\.1:\d+: a line longer than %d bytes" % MAX_LINE)) == 1, \
            server.log
        assert len(server.wait_for(r"cut off 127\.0\.0\.1:\d+: a line longer than %d bytes" % MAX_LINE)) == 1, \
            server.log
        assert len(server.wait_for(r"dropped 127\.0\.0\.1:\d+: more than %d environment lines"
                                   % MAX_ENVIRONMENT_LINES)) == 1, server.log
        assert real_call(server.address).variables == VIP  # still serving
        server.stop()


def test_misbehaving_clients_cost_one_line_at_most(make_setup):
    """Clients that leave, reset, send garbage or stop reading, in every stage: no
    traceback, no stray output, and the next real call is answered."""
    setup = make_setup("sqlite")
    add_vip(setup)
    whole = environment()

    def reset(connection):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    behaviours = {
        "leaves at once": lambda c: None,
        "resets in the environment": lambda c: (c.sendall(whole[:40]), reset(c)),
        "half an environment, then EOF": lambda c: (c.sendall(whole[:40]), c.shutdown(socket.SHUT_WR)),
        "binary garbage": lambda c: c.sendall(bytes(range(256)) * 4 + b"\n\n"),
        "no agi_ lines": lambda c: c.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"),
        "unknown script": lambda c: c.sendall(environment("../../bin/sh")),
        "EOF after the environment": lambda c: (c.sendall(whole), c.shutdown(socket.SHUT_WR), c.recv(65536)),
        "resets mid-call": lambda c: (c.sendall(whole), c.recv(65536), reset(c)),
        "never reads": lambda c: c.sendall(whole + b"200 result=1\n" * 5000),
    }
    with Served(setup, "--deadline", "2") as server:
        for behave in behaviours.values():
            with socket.create_connection(server.address, timeout=5) as connection:
                behave(connection)
        assert real_call(server.address).variables == VIP
        time.sleep(0.3)
        server.stop()
    assert len(server.log) <= 2 + len(behaviours), server.log


# -- the database pool ------------------------------------------------------------------------------
def test_stalled_database_holds_no_more_connections_than_the_pool(make_setup, record_property):
    """20 calls while vip_numbers is locked, --pool 2: at most 2 MariaDB connections
    at any time; the 18 calls that find both busy fail open at once, the 2 stalled ones
    when connect_timeout runs out (0.1: the 18 waited connect_timeout, then opened
    18 more connections)."""
    setup = make_setup("mariadb")
    setup.rewrite(connect_timeout=3)
    add_vip(setup)
    locker = server_connection(setup.mysql_database)
    monitor = server_connection()
    calls = []
    try:
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLES vip_numbers WRITE")
            cursor.execute("SELECT CONNECTION_ID()")
            locker_id = cursor.fetchone()[0]
        with Served(setup, "--pool", "2", "--workers", "1") as server:  # one process: its log names its pool
            workers = [threading.Thread(target=lambda: calls.append(real_call(server.address))) for _ in range(20)]
            for worker in workers:
                worker.start()
            most = 0
            while any(worker.is_alive() for worker in workers):
                with monitor.cursor() as cursor:
                    cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> %s",
                                   (setup.mysql_database, locker_id))
                    most = max(most, cursor.fetchone()[0])
                time.sleep(0.05)
            with locker.cursor() as cursor:
                cursor.execute("UNLOCK TABLES")
            after = real_call(server.address)
            busy = server.wait_for("all 2 database connections are busy", count=18)
            quick = sorted(call.elapsed for call in calls)[:18]
            slow = sorted(call.elapsed for call in calls)[18:]
            record_property("most_database_connections", most)
            record_property("busy_pool_fail_open_seconds_max", round(quick[-1], 3))
            print("\n20 stalled calls, --pool 2: at most %d MariaDB connections; 18 failed open within %.3f s, "
                  "the 2 stalled ones after %.2f s" % (most, quick[-1], slow[0]))
            assert most <= 2, most
            assert quick[-1] < 1.0, quick
            assert slow[0] > 2.5, slow
            assert len(busy) == 18, server.log
            for call in calls:
                assert_failed_open(call, "vip_or_not")
            assert after.variables == VIP, after  # the pool works again once the database does
            server.stop()
    finally:
        locker.close()
        monitor.close()
