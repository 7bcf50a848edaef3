"""The FastAGI server: `vipsticky serve` answers AGI(agi://127.0.0.1/vip_or_not) and friends.

The very same handlers as the per-call scripts, a small pool of database
connections kept open between calls. pyst2's own fastagi.py is Python 2 only, and
its AGI() constructor installs a SIGHUP handler (ValueError outside the main
thread): agi.Channel.from_stream builds the channel without it, and a hangup
arrives as a HANGUP line instead.

Whoever reaches the port can steer calls, so every resource a client can tie up is
bounded. One thread (the reception) accepts connections and reads their
environments without blocking, a thread per call takes over once an environment is
complete:

- clients: loopback unless listening elsewhere, and then only an allowlist;
- connections open at once (reception and calls together); at the cap the one that
  has waited longest for its environment makes room, so idle connections cost a
  file descriptor, never a thread, and cannot keep a real call out;
- one deadline per connection, from accept to close, whatever the client trickles
  (a database statement in progress is bounded by connect_timeout instead);
- line length and environment size, on every byte read;
- database connections: a call borrows one for each statement only, and a call that
  finds all of them busy fails open instead of opening another.
"""
import ipaddress
import os
import queue
import select
import selectors
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager

from .agi import Channel, Hangup
from .call import answer
from .config import ConfigError, load
from .database import Database, DatabaseError
from .rules import printable
from .scripts import NAMES, by_name

MAX_CONNECTIONS = 100         # open at once: environments being read plus calls in progress
DEADLINE = 10.0               # seconds from accept to close, environment and commands together
ENVIRONMENT_TIMEOUT = 5.0     # seconds for the environment (within the deadline): Asterisk sends it at once
MAX_LINE = 64 * 1024          # bytes in any line from a client
MAX_ENVIRONMENT_LINES = 512   # res_agi sends about 25 plus at most 128 arguments
MAX_ENVIRONMENT_BYTES = 512 * 1024
POOL_WAIT = 0.1               # seconds a statement waits for a pooled connection before its call fails open
ACCEPT_BATCH = 32             # connections accepted per turn, so environments already there are read first
RECEIVE_SIZE = 64 * 1024


class ServeError(Exception):
    """The server cannot start: one line for the admin."""


class DatabasePool:
    """Up to `size` open Database objects shared by the calls. A call borrows one for
    each statement only, never while it waits for Asterisk. When all are busy for
    POOL_WAIT (a stalled database), the statement raises DatabaseError and the call
    fails open: the server never holds more than `size` database connections."""

    def __init__(self, settings, size, wait=POOL_WAIT):
        self.settings = settings
        self.size = size
        self.wait = wait
        self._idle = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._retired = False

    @contextmanager
    def database(self):
        """What a call's handler gets as its database."""
        yield _Borrowing(self)

    @contextmanager
    def connection(self):
        if not self._slots.acquire(timeout=self.wait):
            raise DatabaseError("all %d database connections are busy (serve --pool)" % self.size)
        try:
            database = self._idle.get_nowait()
        except queue.Empty:
            database = Database(self.settings)
        try:
            yield database
        finally:
            if self._retired:
                database.close()
            else:
                self._idle.put(database)
            self._slots.release()

    def retire(self):
        """A reload replaced this pool: close the idle connections now, and each one still
        lent to a call in flight when it comes back."""
        self._retired = True
        self.close()

    def close(self):
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class _Borrowing:
    """A Database whose every method runs on a connection borrowed from the pool."""

    def __init__(self, pool):
        self._pool = pool

    def __getattr__(self, name):
        def borrowed(*args, **kwargs):
            with self._pool.connection() as database:
                return getattr(database, name)(*args, **kwargs)
        return borrowed


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


def allowed_networks(entries):
    """The [fastagi] allow / --allow entries as networks; ServeError names a bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip()))
        except ValueError as error:
            raise ServeError("%s is not a client address or network for --allow / [fastagi] allow (%s)"
                             % (printable(entry, 80), error)) from None
    return tuple(networks)


def _address(address) -> str:
    return ("[%s]:%d" if ":" in address[0] else "%s:%d") % address[:2]


class _Cut(OSError):
    """A client went past a limit; the channel takes it for a hangup."""


class _Client:
    """One call's socket as pyst2 reads and writes it (readline, write, flush), within
    the connection's deadline and line limit. What cut it off stays in .problem."""

    def __init__(self, connection, received, deadline, limits):
        self.connection = connection
        self.deadline = deadline
        self.limits = limits
        self.problem = None
        self._buffer = bytearray(received)

    def readline(self) -> str:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or len(self._buffer) > self.limits.max_line:
                if not 0 <= end < self.limits.max_line:
                    raise self._cut("a line longer than %d bytes" % self.limits.max_line)
                line = bytes(self._buffer[:end + 1])
                del self._buffer[:end + 1]
                return line.decode("utf-8", "replace")
            self.connection.settimeout(self._left())
            try:
                data = self.connection.recv(RECEIVE_SIZE)
            except socket.timeout:
                raise self._late() from None
            if not data:  # end of stream: what is left, then ''
                line = bytes(self._buffer)
                self._buffer.clear()
                return line.decode("utf-8", "replace")
            self._buffer += data

    def write(self, text: str) -> int:
        self.connection.settimeout(self._left())
        try:
            self.connection.sendall(text.encode("utf-8", "replace"))
        except socket.timeout:
            raise self._late() from None
        return len(text)

    def flush(self):
        pass

    def close(self):
        try:
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the client left first
        self.connection.close()

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self._late()
        return left

    def _late(self):
        return self._cut("still open at its deadline (%g s)" % self.limits.deadline)

    def _cut(self, problem):
        self.problem = problem
        return _Cut(problem)


class _Arrival:
    """A connection whose environment is still being read."""
    __slots__ = ("connection", "address", "accepted", "received", "scanned", "lines")

    def __init__(self, connection, address, accepted):
        self.connection, self.address, self.accepted = connection, address, accepted
        self.received = bytearray()
        self.scanned = 0  # bytes of received that are whole lines
        self.lines = 0

    def take(self, data, limits):
        """Add bytes; True once the environment is complete, a problem text when a limit
        is passed, None while more is due. The end is the first line that is only
        white space: the channel's reader stops there or earlier."""
        self.received += data
        if len(self.received) > limits.max_environment_bytes:
            return "an environment larger than %d bytes" % limits.max_environment_bytes
        while True:
            end = self.received.find(b"\n", self.scanned)
            if (end if end >= 0 else len(self.received)) - self.scanned > limits.max_line:
                return "a line longer than %d bytes" % limits.max_line
            if end < 0:
                return None
            line = self.received[self.scanned:end]
            self.scanned = end + 1
            if not line.strip():
                return True
            self.lines += 1
            if self.lines > limits.max_environment_lines:
                return "more than %d environment lines" % limits.max_environment_lines


class Limits:
    """What one client may take: see the module's constants."""

    def __init__(self, max_connections=MAX_CONNECTIONS, deadline=DEADLINE, environment_timeout=ENVIRONMENT_TIMEOUT,
                 max_line=MAX_LINE, max_environment_lines=MAX_ENVIRONMENT_LINES,
                 max_environment_bytes=MAX_ENVIRONMENT_BYTES):
        self.max_connections = max_connections
        self.deadline = deadline
        self.environment_timeout = min(environment_timeout, deadline)
        self.max_line = max_line
        self.max_environment_lines = max_environment_lines
        self.max_environment_bytes = max_environment_bytes


class Server:
    """The listening socket, the reception (serve_forever) and the calls' threads.
    serve_forever / shutdown / server_close / server_address as socketserver's."""

    def __init__(self, config, address, pool, log, allow, limits):
        self.config, self.pool, self.log, self.allow, self.limits = config, pool, log, allow, limits
        family, sockaddr = address
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(sockaddr)
            self.socket.listen(256)  # a burst of calls must queue, not see dropped SYNs (1 s retransmit)
        except OSError as error:
            self.socket.close()
            raise ServeError("cannot listen on %s: %s" % (_address(sockaddr), error.strerror or error)) from None
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()[:2]
        self._arrivals = {}  # socket -> _Arrival, oldest first
        self._calls = set()  # threads of the calls in progress
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    # -- the reception ---------------------------------------------------------------
    def serve_forever(self, poll_interval=0.5):
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                while not self._stop.is_set():
                    wait = poll_interval
                    if self._arrivals:
                        wait = max(0.0, min(wait, self._oldest().accepted + self.limits.environment_timeout
                                            - time.monotonic()))
                    events = selector.select(wait)
                    # Environments that are there first: new connections cannot push them out.
                    for key, _ in sorted(events, key=lambda event: event[0].data is None):
                        if key.data is None:
                            self._accept(selector)
                        elif key.data.connection in self._arrivals:
                            self._receive(selector, key.data)
                    self._expire(selector)
                for arrival in list(self._arrivals.values()):
                    self._drop(selector, arrival)
        finally:
            self._stop.clear()
            self._stopped.set()

    def _accept(self, selector):
        for _ in range(ACCEPT_BATCH):
            try:
                connection, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # out of file descriptors: the backlog waits a moment
                self.log("cannot accept a connection: %s" % (error.strerror or error))
                self._stop.wait(0.5)
                return
            if not self._allowed(address[0]):
                self.log("refused %s: not an allowed client (--allow / [fastagi] allow)" % _address(address))
                connection.close()
                continue
            if len(self._arrivals) + len(self._calls) >= self.limits.max_connections:
                if not self._arrivals:
                    self.log("refused %s: %d calls in progress (--max-connections)"
                             % (_address(address), len(self._calls)))
                    connection.close()
                    continue
                self._drop(selector, self._oldest(), "no environment yet and %d connections open (--max-connections)"
                           % self.limits.max_connections)
            connection.setblocking(False)
            arrival = _Arrival(connection, address, time.monotonic())
            self._arrivals[connection] = arrival
            selector.register(connection, selectors.EVENT_READ, arrival)

    def _allowed(self, host) -> bool:
        if not self.allow:
            return True
        address = ipaddress.ip_address(host.split("%", 1)[0])
        address = getattr(address, "ipv4_mapped", None) or address
        return any(address in network for network in self.allow)

    def _receive(self, selector, arrival):
        try:
            data = arrival.connection.recv(RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # reset by the client
        if not data:
            self._drop(selector, arrival)  # gone before its environment: nothing to tell
            return
        outcome = arrival.take(data, self.limits)
        if outcome is True:
            self._start_call(selector, arrival)
        elif outcome:
            self._drop(selector, arrival, outcome)

    def _expire(self, selector):
        since = time.monotonic() - self.limits.environment_timeout
        while self._arrivals and self._oldest().accepted <= since:
            self._drop(selector, self._oldest(), "no complete environment within %g s" % self.limits.environment_timeout)

    def _oldest(self):
        return next(iter(self._arrivals.values()))

    def _drop(self, selector, arrival, problem=None):
        if problem:
            self.log("dropped %s: %s" % (_address(arrival.address), problem))
        selector.unregister(arrival.connection)
        del self._arrivals[arrival.connection]
        arrival.connection.close()

    # -- the calls -------------------------------------------------------------------------
    def _start_call(self, selector, arrival):
        selector.unregister(arrival.connection)
        del self._arrivals[arrival.connection]
        client = _Client(arrival.connection, arrival.received, arrival.accepted + self.limits.deadline, self.limits)
        thread = threading.Thread(target=self._call, args=(client, arrival.address),
                                  name="call %s" % _address(arrival.address))
        with self._lock:
            self._calls.add(thread)
        try:
            thread.start()
        except RuntimeError as error:  # no thread to be had: this call only is lost
            self.log("cannot answer %s: %s" % (_address(arrival.address), error))
            with self._lock:
                self._calls.discard(thread)
            client.close()

    def _call(self, client, address):
        try:
            answer_connection(client, client, self.config, self.pool, self.log)
        except OSError:
            pass  # a reset, or a limit the reader already noted
        except Exception:
            self.handle_error(client.connection, address)
        finally:
            if client.problem:
                self.log("cut off %s: %s" % (_address(address), client.problem))
            client.close()
            with self._lock:
                self._calls.discard(threading.current_thread())

    def handle_error(self, request, client_address):
        """A bug met on one connection: one line, never a traceback (the call is lost)."""
        error = sys.exc_info()[1]
        self.log("internal error on %s: %s: %s" % (_address(client_address), type(error).__name__,
                                                   printable(error, 200)))

    # -- stopping ----------------------------------------------------------------------------
    def shutdown(self):
        """Stop accepting (connections without their environment are closed); returns
        when serve_forever has."""
        self._stop.set()
        self._stopped.wait()

    def server_close(self):
        """Close the listening socket and wait for the calls in flight (each ends by its
        deadline at the latest)."""
        self.socket.close()
        while True:
            with self._lock:
                calls = list(self._calls)
            if not calls:
                return
            for thread in calls:
                thread.join()


def listen_address(host, port):
    """(family, sockaddr) to bind for HOST:PORT; ServeError when it does not resolve."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host or None, port, 0, socket.SOCK_STREAM, 0,
                                                       socket.AI_PASSIVE)[0]
    except (OSError, UnicodeError) as error:
        raise ServeError("cannot listen on %s: %s" % (printable(host, 80), getattr(error, "strerror", None) or error))
    return family, sockaddr


def make_server(config, host, port, pool_size, log, allow=None, **limits):
    """The server, bound, not yet serving. allow: client addresses or networks (None:
    the config's [fastagi] allow); limits: Limits' keyword arguments. A listening
    address other than loopback needs an allowlist (ServeError)."""
    address = listen_address(host, port)
    networks = client_networks(config, allow, address[1])
    return Server(config, address, DatabasePool(config.database, pool_size), log, networks, Limits(**limits))


def client_networks(config, allow, sockaddr):
    """The allowlist (allow, else the config's [fastagi] allow) as networks; ServeError
    when there is none and the listening address is not loopback."""
    networks = allowed_networks(config.fastagi.allow if allow is None else allow)
    if not networks and not ipaddress.ip_address(sockaddr[0].split("%", 1)[0]).is_loopback:
        raise ServeError("listening on %s needs the clients allowed to connect: --allow ADDRESS[/BITS] "
                         "or [fastagi] allow" % _address(sockaddr))
    return networks


def reload(server, allow=None, before_log=None):
    """SIGHUP: read the config file again, say so in one log line. A changed [database]
    gets a new pool; the calls in flight finish on the old one, which then closes. A
    file that does not load leaves everything as it was. Returns (config, networks) as
    switched to, or None; before_log(config, networks) runs before the line is logged
    (the workers switch then)."""
    path = server.config.path
    try:
        config = load(path)
        networks = client_networks(config, allow, server.server_address)
    except (ConfigError, ServeError) as error:
        server.log("reload refused, serving on with the config as it was: %s" % error)
        return None
    changed = switch(server, config, networks)
    if before_log is not None:
        before_log(config, networks)
    server.log("reloaded %s: %s" % (printable(path, 200), "[database] changed, new pool for %s (calls in flight "
                                    "finish on the old one)" % config.database.safe_url if changed
                                    else "[database] unchanged, pool kept"))
    return config, networks


def switch(server, config, networks) -> bool:
    """Serve with this config from now on; True when [database] changed (a new pool)."""
    pool = server.pool
    changed = config.database != pool.settings
    if changed:
        server.pool = DatabasePool(config.database, pool.size, pool.wait)
        pool.retire()
    server.config, server.allow = config, networks
    return changed


def serve(config, host="127.0.0.1", port=4573, pool_size=8, log=None, ready=None, allow=None, workers=1, **limits):
    """Serve until SIGTERM or SIGINT, then finish the calls in flight and return; SIGHUP
    reloads the config file (reload). workers > 1: that many processes (Supervisor),
    sharing pool_size database connections (each at least one); limits are each one's."""
    log = log or stderr_log
    server = make_server(config, host, port, max(1, pool_size // workers), log, allow, **limits)
    if workers > 1:
        Supervisor(server, workers, allow, log).run(ready)
        return
    inbox = Inbox((signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    worker.start()
    log(listening(server))
    if ready is not None:
        ready(server.server_address)
    stopping = False
    while not stopping:
        for signum in inbox.take():
            if signum == signal.SIGHUP:
                reload(server, allow)
            else:
                stopping = True
    server.shutdown()      # no new connections
    server.server_close()  # waits for the calls in flight
    server.pool.close()
    log("stopped")


class Supervisor:
    """serve --workers N: a pre-fork. N processes forked from this one share its listening
    socket (each accepts from it when it can: a busy one leaves the next connection to
    another), each with its own reception, call threads and database pool, so calls use
    every core despite Python's GIL; this process only supervises them.

    SIGTERM or SIGINT here: every worker stops accepting, finishes its calls in flight
    and exits, then this one logs "stopped". SIGHUP here: the config file is read once,
    here; every worker switches to that very config and confirms before the one log
    line. A worker gets its orders over a pipe, so a signal sent to the supervisor alone
    (systemd's $MAINPID) reaches all of them; a worker that dies is replaced (at most
    one a second); a worker whose supervisor is gone stops as on SIGTERM."""
    ACK_WAIT = 10.0  # seconds a reload waits for each worker's confirmation

    def __init__(self, server, count, allow, log):
        self.server, self.count, self.allow, self.log = server, count, allow, log
        self.workers = {}  # pid -> [index, pipe to it, started]
        self.inbox = None  # run()'s

    def run(self, ready=None):
        self.inbox = Inbox((signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD))
        for index in range(self.count):
            self.start(index)
        self.log(listening(self.server, self.count))
        if ready is not None:
            ready(self.server.server_address)
        stopping = False
        while self.workers or not stopping:
            for signum in self.inbox.take(1.0):  # also a periodic look for workers that ended
                if signum == signal.SIGHUP and not stopping:
                    reload(self.server, self.allow, before_log=self.tell_reload)
                elif signum in (signal.SIGTERM, signal.SIGINT) and not stopping:
                    stopping = True
                    for worker in self.workers.values():
                        self.tell(worker, ("stop",))
            self.reap(stopping)
        self.server.socket.close()
        self.log("stopped")

    def start(self, index):
        from multiprocessing import Pipe
        mine, theirs = Pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                mine.close()
                for other in self.workers.values():
                    other[1].close()
                self.inbox.close()  # the worker has its own
                code = work(self.server, theirs)
            except BaseException:  # nothing may unwind into the supervisor's code in this process
                pass
            finally:
                os._exit(code)
        theirs.close()
        self.workers[pid] = [index, mine, time.monotonic()]

    def tell(self, worker, message):
        try:
            worker[1].send(message)
        except OSError:
            pass  # it is gone: reap() sees to it

    def tell_reload(self, config, networks):
        """Every worker switches to config; wait (a while) until each has."""
        for worker in self.workers.values():
            self.tell(worker, ("reload", config, networks))
        deadline = time.monotonic() + self.ACK_WAIT
        for worker in list(self.workers.values()):
            try:
                if worker[1].poll(max(0.0, deadline - time.monotonic())):
                    worker[1].recv()
            except (OSError, EOFError):
                pass

    def reap(self, stopping):
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            worker[1].close()
            if not stopping:
                self.log("worker %d (pid %d) ended (%s): starting another" % (worker[0] + 1, pid, _status(status)))
                time.sleep(max(0.0, 1.0 - (time.monotonic() - worker[2])))
                self.start(worker[0])


def work(server, orders) -> int:
    """One worker process of a Supervisor: serve on the shared socket until told to stop
    (or SIGTERM/SIGINT, or the supervisor is gone), switching configs as told."""
    inbox = Inbox((signal.SIGTERM, signal.SIGINT))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor reads the config and tells us
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    def listen():
        while True:
            try:
                message = orders.recv()
            except (EOFError, OSError):
                message = ("stop",)
            inbox.put(message)
            if message[0] == "stop":
                return
    threading.Thread(target=listen, daemon=True).start()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    while True:
        for message in inbox.take():
            if message in (signal.SIGTERM, signal.SIGINT):
                message = ("stop",)
            if message[0] == "stop":
                server.shutdown()      # no new connections
                server.server_close()  # waits for the calls in flight
                server.pool.close()
                return 0
            switch(server, *message[1:])
            try:
                orders.send(("switched",))
            except OSError:
                pass


class Inbox:
    """What the main thread of `vipsticky serve` acts on, in order: the signals it
    handles, and what other threads put (a worker's orders from its supervisor).

    A signal handler runs in the main thread between two bytecodes, also while that
    thread holds a lock (inside a threading.Event's wait or clear): a handler that
    took the same lock would wait forever, and so would a SIGTERM. So a handler only
    appends, and the wake-up fd that Python writes to as a signal arrives ends the
    main thread's wait."""

    def __init__(self, signums):
        self._messages = []
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in signums:
            signal.signal(signum, self._note)

    def _note(self, signum, frame):
        self._messages.append(signum)

    def put(self, message) -> None:
        """A message from another thread."""
        self._messages.append(message)
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def take(self, timeout=None) -> list:
        """Everything received since the last take, in order; while there is nothing,
        waits for something up to timeout seconds (None: as long as it takes)."""
        if not self._messages:
            select.select([self._read], [], [], timeout)
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass
        taken = []
        while self._messages:
            taken.append(self._messages.pop(0))
        return taken

    def close(self) -> None:
        """In a forked worker: the supervisor's inbox is not its own."""
        signal.set_wakeup_fd(-1)
        os.close(self._read)
        os.close(self._write)


def listening(server, workers=1) -> str:
    """The first log line of `vipsticky serve`."""
    return ("listening on %s (%spool of %d database connections, at most %d connections, deadline %g s, clients: %s)"
            % (_address(server.server_address), "%d worker processes, each with a " % workers if workers > 1 else "",
               server.pool.size, server.limits.max_connections, server.limits.deadline,
               ", ".join(map(str, server.allow)) or "any on this host"))


def _status(status) -> str:
    if os.WIFSIGNALED(status):
        return "signal %d" % os.WTERMSIG(status)
    return "exit %d" % os.WEXITSTATUS(status)


def stderr_log(message):
    """One line per event: systemd's journal takes stderr (one write: threads never mix lines)."""
    sys.stderr.write("vipsticky serve: %s\n" % message)
    sys.stderr.flush()
