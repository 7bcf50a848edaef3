"""The FastAGI server: `vipsticky serve` answers AGI(agi://127.0.0.1/vip_or_not) and friends.

The very same handlers as the per-call scripts, one thread per connection, a
small pool of database connections kept open between calls. pyst2's own
fastagi.py is Python 2 only, and its AGI() constructor installs a SIGHUP handler
(ValueError outside the main thread): agi.Channel.from_stream builds the
channel without it, and a hangup arrives as a HANGUP line instead.
"""
import queue
import signal
import socketserver
import sys
import threading
from contextlib import contextmanager

from .agi import Channel, Hangup
from .call import answer
from .database import Database
from .rules import printable
from .scripts import NAMES, by_name
IDLE_TIMEOUT = 60  # seconds without a line from Asterisk before a connection is dropped


class DatabasePool:
    """Up to `size` open Database objects shared by the calls. A call that finds
    none free within connect_timeout gets a connection of its own for that call,
    so a burst is slower but never fails."""

    def __init__(self, settings, size):
        self.settings = settings
        self._idle = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def database(self):
        if not self._slots.acquire(timeout=self.settings.connect_timeout):
            extra = Database(self.settings)
            try:
                yield extra
            finally:
                extra.close()
            return
        try:
            database = self._idle.get_nowait()
        except queue.Empty:
            database = Database(self.settings)
        try:
            yield database
        finally:
            self._idle.put(database)
            self._slots.release()

    def close(self):
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def script_name(env) -> str:
    """agi_network_script, or the path of agi_request (agi://host/vip_or_not?x)."""
    name = env.get("agi_network_script") or env.get("agi_request", "").split("/", 3)[-1]
    return name.split("?", 1)[0].strip("/")


def answer_connection(rfile, wfile, config, pool, log) -> str:
    """One FastAGI connection, start to end. Returns ok, hangup, failed or unknown."""
    try:
        channel = Channel.from_stream(rfile, wfile)
    except Hangup:
        return "hangup"
    name = script_name(channel.env)
    script = by_name(name)
    if script is None:
        log("unknown script %s requested: use %s" % (printable(name), ", ".join(NAMES)))
        return "unknown"
    with pool.database() as database:
        return answer(channel, script, config, database, log=log)


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    request_queue_size = 256  # a burst of calls must queue, not see dropped SYNs (1 s retransmit)
    daemon_threads = False  # server_close() waits for the calls in flight
    block_on_close = True


def make_server(config, host, port, pool_size, log):
    pool = DatabasePool(config.database, pool_size)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            self.connection.settimeout(IDLE_TIMEOUT)
            rfile = self.connection.makefile("r", encoding="utf-8", errors="replace", newline="\n")
            wfile = self.connection.makefile("w", encoding="utf-8", errors="replace", newline="\n")
            try:
                answer_connection(rfile, wfile, config, pool, log)
            finally:
                for stream in (wfile, rfile):
                    try:
                        stream.close()
                    except OSError:
                        pass  # Asterisk closed first

    server = _Server((host, port), Handler)
    server.pool = pool
    return server


def serve(config, host="127.0.0.1", port=4573, pool_size=8, log=None, ready=None):
    """Serve until SIGTERM or SIGINT, then finish the calls in flight and return."""
    log = log or stderr_log
    server = make_server(config, host, port, pool_size, log)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    worker.start()
    log("listening on %s:%d (pool of %d database connections)" % (host, server.server_address[1], pool_size))
    if ready is not None:
        ready(server.server_address)
    stop.wait()
    server.shutdown()      # no new connections
    server.server_close()  # waits for the calls in flight
    server.pool.close()
    log("stopped")


def stderr_log(message):
    """One line per event: systemd's journal takes stderr."""
    print("vipsticky serve: %s" % message, file=sys.stderr, flush=True)
