"""The only user of pyst2: one Asterisk channel, seen through AGI.

It quotes every value it sends (a label typed into a web form must not become a
second AGI command), turns every way a channel can go away (SIGHUP, a HANGUP
line, EOF, 511, a broken pipe) into one Hangup exception, and runs a handler so
that any failure ends in the handler's fail-open values, one VERBOSE line, one
syslog line and exit status 0: the call goes on to the queue whatever happens.
"""
from __future__ import annotations

import io
import os
import re
import signal
import sys

from asterisk.agi import AGI, AGIAppError, AGIError, AGIHangup, AGIInvalidCommand, AGIResultHangup, AGIUsageError

from .config import QUEUE_NAME, Config, ConfigError, DatabaseSettings, load, printable
from .db import Database, DatabaseError

# Tech/resource with nothing that Dial would read as a separator (& , |), no quotes,
# no white space, no dialplan expression characters.
AGENT = re.compile(r"^(?=.{3,120}$)[A-Za-z][A-Za-z0-9_]{0,31}/[A-Za-z0-9_.@:+=#*/~%-]+$")  # fits VARCHAR(120)
# What res_agi sends every script before the arguments (Asterisk 18 to 22).
STANDARD_ENV = frozenset((
    "agi_request", "agi_channel", "agi_language", "agi_type", "agi_uniqueid", "agi_version", "agi_callerid",
    "agi_calleridname", "agi_callingpres", "agi_callingani2", "agi_callington", "agi_callingtns", "agi_dnid",
    "agi_rdnis", "agi_context", "agi_extension", "agi_priority", "agi_enhanced", "agi_accountcode",
    "agi_threadid"))
MAX_VALUE = 500  # well inside Asterisk's AGI line buffer (2048): a longer line would be split
FALLBACK_CONFIG = Config(database=DatabaseSettings(dialect="sqlite", url="sqlite:///dev/null", path="/dev/null"))


class Hangup(Exception):
    """The channel is gone: nothing more can be said to Asterisk."""


class CommandFailed(Exception):
    """Asterisk answered a command with a failure (result=-1, 510, 520)."""


class CallDeadline(BaseException):
    """The call's time budget ran out (a database that accepts and never answers).
    A BaseException, like KeyboardInterrupt: no library's `except Exception` may
    swallow it or dress it up as another error."""


def valid_agent(agent) -> bool:
    return isinstance(agent, str) and bool(AGENT.match(agent))


def valid_queue(queue) -> bool:
    return isinstance(queue, str) and bool(QUEUE_NAME.match(queue))


def quote(value) -> str:
    """One AGI argument: double-quoted, backslash and quote escaped, no line breaks or NUL."""
    text = str(value)[:MAX_VALUE]
    text = text.replace("\r", " ").replace("\n", " ").replace("\x00", "")
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


class _Discard:
    """pyst2 writes its whole debug trace to stderr; Asterisk would log every line."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass


class _OutOfStep(Exception):
    """A line that is no reply was read where a reply was due."""


class _Replies:
    """Asterisk's side of the conversation as pyst2 reads replies from it. Asterisk
    writes agi_* values raw, so a line feed in a caller ID or argument can end the
    environment early and leave its rest in the pipe, where it would be taken for
    the replies to our commands, each one behind."""
    REPLY = re.compile(r"^(200 result=|5[12]\d[ -]|HANGUP)")  # what res_agi answers a command with

    def __init__(self, stream):
        self.stream = stream

    def readline(self):
        line = self.stream.readline()
        if line and not self.REPLY.match(line):
            raise _OutOfStep()
        return line


class _AGI(AGI):
    """pyst2's AGI without its side effects: no debug on stderr, and the SIGHUP handler
    only where there is one (a FastAGI connection lives in a thread and gets a
    HANGUP line instead; signal.signal would raise ValueError there)."""

    def __init__(self, stdin, stdout, watch_sighup):
        self.stdout, self.stderr = stdout, _Discard()
        self._got_sighup = False
        if watch_sighup:
            signal.signal(signal.SIGHUP, self._handle_sighup)
        self.env = {}
        self.env_damaged = False
        # pyst2's own reader pprints the environment to stderr and lets a repeated key
        # win: here the first agi_* value stands, so a line feed in a caller ID cannot
        # bring in a second agi_network_script or agi_arg_1.
        while True:
            line = stdin.readline().strip()
            if not line:
                break
            key, sep, value = line.partition(":")
            key = key.strip()
            if sep and key.startswith("agi_") and key not in self.env:
                self.env[key] = value.strip()
            else:
                self.env_damaged = True
        self.stdin = _Replies(stdin)  # what pyst2 reads replies from


class Channel:
    def __init__(self, agi: AGI, args):
        self._agi = agi
        self.env = agi.env
        self.args = list(args)

    @classmethod
    def from_stdio(cls, args):
        """The per-call script's channel: Asterisk on stdin/stdout, SIGHUP on hangup."""
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="\n")
        stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="replace", newline="\n",
                                  write_through=True)
        channel = cls(_AGI(stdin, stdout, watch_sighup=True), args)
        channel._catch_up(STANDARD_ENV | {"agi_arg_%d" % count for count in range(1, len(args) + 1)})
        return channel

    @classmethod
    def from_stream(cls, rfile, wfile):
        """A FastAGI connection's channel: arguments arrive as agi_arg_N lines. How many
        there should be is unknown, so a cut among them is caught later, when a reply
        turns out to be a leftover environment line (_execute)."""
        agi = _AGI(rfile, wfile, watch_sighup=False)
        count = 1
        args = []
        while "agi_arg_%d" % count in agi.env:
            args.append(agi.env["agi_arg_%d" % count])
            count += 1
        channel = cls(agi, args)
        channel._catch_up(STANDARD_ENV)
        return channel

    def _catch_up(self, expected_keys):
        """Resynchronise at once when the environment was visibly cut short."""
        if self._agi.env_damaged or not expected_keys <= self.env.keys():
            self._resync()

    def _resync(self):
        """Skip what is left of a cut environment: ask Asterisk to echo a random token
        and read past everything up to that echo (a caller cannot guess the token)."""
        token = "vipsticky-sync-" + os.urandom(8).hex()
        try:
            self._agi.test_hangup()
            self._agi.send_command("GET FULL VARIABLE", quote(token))
            for _ in range(100000):
                line = self._agi.stdin.stream.readline()
                if not line:
                    break
                if "(%s)" % token in line:
                    return
        except (AGIHangup, OSError):
            pass
        raise Hangup()

    def _execute(self, command, *args):
        try:
            try:
                return self._agi.execute(command, *args)
            except _OutOfStep:
                # The rest of a cut environment: skip it and ask again (sending a
                # command twice is harmless here: at worst the beep plays twice).
                self._resync()
                return self._agi.execute(command, *args)
        except _OutOfStep:
            raise Hangup() from None
        except AGIResultHangup:
            if command.startswith("GET"):
                # pyst2 takes a value that is literally "hangup" for a hangup notice.
                return {"result": ("1", "hangup")}
            raise Hangup() from None
        except AGIHangup:  # SIGHUP seen
            raise Hangup() from None
        except (AGIAppError, AGIInvalidCommand, AGIUsageError) as error:
            raise CommandFailed("%s: %s" % (command, printable(error))) from None
        except (AGIError, ValueError, OSError):
            # 511 (dead channel), an empty reply (EOF), a HANGUP line, a broken pipe
            raise Hangup() from None

    @property
    def caller_id(self) -> str:
        return self.env.get("agi_callerid", "")

    def get(self, name: str) -> str:
        """A channel variable, '' when unset."""
        result = self._execute("GET VARIABLE", quote(name))
        code, data = result["result"]
        return data if code == "1" else ""

    def evaluate(self, expression: str) -> str:
        """A dialplan expression such as ${DEVICE_STATE(PJSIP/alena)}."""
        code, data = self._execute("GET FULL VARIABLE", quote(expression))["result"]
        return data if code == "1" else ""

    def set(self, name: str, value) -> None:
        self._execute("SET VARIABLE", quote(name), quote(value))

    def verbose(self, message: str, level: int = 1) -> None:
        self._execute("VERBOSE", quote(message), level)

    def play(self, sound: str) -> bool:
        """Play a sound; a missing or broken file is reported, never raised."""
        try:
            code, _ = self._execute("STREAM FILE", quote(sound), '""', 0)["result"]
        except CommandFailed:
            return False
        return code != "-1"


def answer(channel: Channel, name: str, handle, fail_open, config: Config, database, deadline=None,
           log=None) -> str:
    """Run one call's handler; on any failure set its fail-open values and log once
    (syslog unless `log` is given). Returns 'ok', 'hangup' or 'failed'."""
    try:
        with _Deadline(deadline):
            handle(channel, channel.args, config, database)
        return "ok"
    except Hangup:
        return "hangup"
    except (Exception, CallDeadline) as error:
        fail(channel, name, fail_open, config, error, log)
        return "failed"


def fail(channel: Channel, name: str, fail_open, config: Config, error: BaseException, log=None) -> None:
    """Log the failure once (syslog unless `log` is given, and one VERBOSE line) and
    set the handler's fail-open values."""
    reason = describe(error)
    if log is None:
        syslog_failure(name, reason, config.syslog_facility)
    else:
        log("%s: %s; failing open" % (name, reason))
    try:
        channel.verbose("vipsticky %s: %s; failing open" % (name, reason))
        fail_open(channel, config)
    except (Hangup, CommandFailed):
        pass  # the caller is gone, or Asterisk refused: nothing more to tell


def run(name: str, handle, fail_open) -> int:
    """main() of a per-call script. Always exits 0: a failure is a normal call."""
    try:
        channel = Channel.from_stdio(sys.argv[1:])
    except Hangup:
        return 0
    try:
        config = load()
    except ConfigError as error:
        fail(channel, name, fail_open, FALLBACK_CONFIG, error)
        return 0
    database = Database(config.database)
    try:
        # Bounded time whatever the database does: connect and every read are also
        # capped by connect_timeout; this is the backstop for everything together.
        answer(channel, name, handle, fail_open, config, database,
               deadline=config.database.connect_timeout + 0.8)
    finally:
        database.close()
    return 0


def describe(error: BaseException) -> str:
    if isinstance(error, (DatabaseError, ConfigError, CommandFailed)):
        return printable(error, 300)
    if isinstance(error, CallDeadline):
        return "no answer from the database in time"
    return "%s: %s" % (type(error).__name__, printable(error, 200))


def syslog_failure(name: str, reason: str, facility: str) -> None:
    import syslog
    syslog.openlog("vipsticky", syslog.LOG_PID, getattr(syslog, "LOG_" + facility.upper(), syslog.LOG_DAEMON))
    syslog.syslog(syslog.LOG_WARNING, "%s: %s; failing open" % (name, reason))


class _Deadline:
    """SIGALRM-based time limit; a no-op when not asked for or outside the main thread
    (signal.signal raises ValueError there: FastAGI relies on socket timeouts).

    An alarm that lands in a finalizer or weakref callback cannot raise there:
    Python prints it to stderr (Asterisk would log a traceback) and goes on. So the
    timer repeats every 50 ms until the block is left, and such swallowed alarms
    are kept off stderr."""
    REPEAT = 0.05

    def __init__(self, seconds):
        self.seconds = seconds
        self._previous_hook = None

    def __enter__(self):
        if self.seconds:
            try:
                signal.signal(signal.SIGALRM, self._expired)
            except ValueError:
                self.seconds = None
                return
            self._previous_hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable
            signal.setitimer(signal.ITIMER_REAL, self.seconds, self.REPEAT)

    def __exit__(self, *exc):
        if self.seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.unraisablehook = self._previous_hook
        return False

    def _unraisable(self, info):
        if not isinstance(info.exc_value, CallDeadline):
            self._previous_hook(info)

    @staticmethod
    def _expired(signum, frame):
        raise CallDeadline()
