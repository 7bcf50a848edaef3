"""The only user of pyst2: one Asterisk channel, seen through AGI.

It quotes every value it sends (a label typed into a web form must not become a
second AGI command), turns every way a channel can go away (SIGHUP, a HANGUP
line, EOF, 511, a broken pipe) into one Hangup exception, and runs a handler so
that any failure ends in the handler's fail-open values, one VERBOSE line, one
syslog line and exit status 0: the call goes on to the queue whatever happens.
"""
from __future__ import annotations

import io
import re
import signal
import sys

from asterisk.agi import AGI, AGIAppError, AGIError, AGIHangup, AGIInvalidCommand, AGIUsageError

from .config import QUEUE_NAME, Config, ConfigError, DatabaseSettings, load
from .db import Database, DatabaseError

# Tech/resource with nothing that Dial would read as a separator (& , |), no quotes,
# no white space, no dialplan expression characters.
AGENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}/[A-Za-z0-9_.@:+=#*/~%-]{1,100}$")
MAX_VALUE = 500  # well inside Asterisk's AGI line buffer (2048): a longer line would be split
FALLBACK_CONFIG = Config(database=DatabaseSettings(dialect="sqlite", url="sqlite:///dev/null", path="/dev/null"))


class Hangup(Exception):
    """The channel is gone: nothing more can be said to Asterisk."""


class CommandFailed(Exception):
    """Asterisk answered a command with a failure (result=-1, 510, 520)."""


class CallDeadline(Exception):
    """The call's time budget ran out (a database that accepts and never answers)."""


def valid_agent(agent) -> bool:
    return isinstance(agent, str) and bool(AGENT.match(agent))


def valid_queue(queue) -> bool:
    return isinstance(queue, str) and bool(QUEUE_NAME.match(queue))


def printable(text, limit=80) -> str:
    """A value fit for a log line: control characters shown escaped, length bounded."""
    text = str(text)
    shown = text[:limit].encode("unicode_escape", "backslashreplace").decode("ascii")
    return shown + ("..." if len(text) > limit else "")


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


class _AGI(AGI):
    """pyst2's AGI without its side effects: no debug on stderr, and the SIGHUP handler
    only where there is one (a FastAGI connection lives in a thread and gets a
    HANGUP line instead; signal.signal would raise ValueError there)."""

    def __init__(self, stdin, stdout, watch_sighup):
        self.stdin, self.stdout, self.stderr = stdin, stdout, _Discard()
        self._got_sighup = False
        if watch_sighup:
            signal.signal(signal.SIGHUP, self._handle_sighup)
        self.env = {}
        # pyst2's own reader pprints the environment to stderr; this reads it the same way.
        while True:
            line = stdin.readline().strip()
            if not line:
                break
            key, _, value = line.partition(":")
            if key.strip():
                self.env[key.strip()] = value.strip()


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
        return cls(_AGI(stdin, stdout, watch_sighup=True), args)

    @classmethod
    def from_stream(cls, rfile, wfile):
        """A FastAGI connection's channel: arguments arrive as agi_arg_N lines."""
        agi = _AGI(rfile, wfile, watch_sighup=False)
        count = 1
        args = []
        while "agi_arg_%d" % count in agi.env:
            args.append(agi.env["agi_arg_%d" % count])
            count += 1
        return cls(agi, args)

    def _execute(self, command, *args):
        try:
            return self._agi.execute(command, *args)
        except AGIHangup:  # SIGHUP seen, or "result=-1 (hangup)"
            raise Hangup() from None
        except (AGIAppError, AGIInvalidCommand, AGIUsageError) as error:
            raise CommandFailed("%s: %s" % (command, printable(error))) from None
        except (AGIError, ValueError, OSError):
            # 511 (dead channel), an empty reply (EOF), a HANGUP line, a broken pipe
            raise Hangup() from None

    def argument(self, index: int, default: str = "") -> str:
        return self.args[index] if len(self.args) > index else default

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
    except Exception as error:
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
        return "failed"


def run(name: str, handle, fail_open) -> int:
    """main() of a per-call script. Always exits 0: a failure is a normal call."""
    channel = Channel.from_stdio(sys.argv[1:])
    try:
        config = load()
    except ConfigError as error:
        def config_failed(*_):
            raise error
        answer(channel, name, config_failed, fail_open, FALLBACK_CONFIG, None)
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


def describe(error: Exception) -> str:
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
    (signal.signal raises ValueError there: FastAGI relies on socket timeouts)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        if self.seconds:
            try:
                signal.signal(signal.SIGALRM, self._expired)
            except ValueError:
                self.seconds = None
                return
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        if self.seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return False

    @staticmethod
    def _expired(signum, frame):
        raise CallDeadline()
