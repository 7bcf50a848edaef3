"""One call's lifecycle: run a script's handler so that any failure ends in its fail-open values.

A failure gives the handler's fail-open values, one WARNING in the Asterisk log, one
syslog line and exit status 0: the call goes on to the queue whatever happens.
"""
import os
import signal
import sys
import time

from .agi import Channel, CommandFailed, Hangup
from .config import Config, ConfigError, DatabaseSettings, load
from .database import Database, DatabaseError
from .events import Outcome, append, line
from .number_keys import number_key
from .records import record
from .rules import printable, valid_queue

# What a call runs with when its config cannot be read: the fail-open values need none.
FALLBACK_CONFIG = Config(database=DatabaseSettings(dialect="sqlite", url="sqlite:///dev/null", path="/dev/null"))
DEADLINE_MARGIN = 0.8  # seconds beyond connect_timeout for everything a call does together


class Script(record("Script", "name handle fail_open patience", defaults=(None,))):
    """One AGI script: handle(channel, args, config, database) does the work and returns
    its events.Outcome, fail_open(channel, config) sets the values a call gets when it
    cannot; patience(config, args), if given, is how many seconds of the call's time
    budget the script may spend waiting on purpose (sticky_route's busy_wait)."""
    __slots__ = ()

    def main(self) -> int:
        """The console script's entry point (setup.cfg). It never returns: once the call is
        answered the process ends at once, without the interpreter's teardown (freeing
        every module and object: 5 to 8 ms here), because Asterisk takes the AGI as
        finished only when the process has exited, and the dialplan waits until then."""
        code = run(self)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class BadArgument(Exception):
    """An AGI argument the dialplan got wrong (not the caller's number)."""


class CallDeadline(BaseException):
    """The call's time budget ran out (a database that accepts and never answers).
    A BaseException, like KeyboardInterrupt: no library's `except Exception` may
    swallow it or dress it up as another error."""


def check_count(args, most: int, usage: str) -> None:
    """Refuse more arguments than a script takes: an unfiltered caller ID with commas
    in it would otherwise shift the next arguments (the queue, the agent)."""
    if len(args) > most:
        raise BadArgument("%d arguments where %s takes at most %d: filter the caller ID before AGI() "
                          "(${FILTER(0-9+,${CALLERID(num)})})" % (len(args), usage, most))


def number_and_queue(channel, args, config):
    """(number key or None, queue) from the arguments NUMBER[,QUEUE]: an omitted or empty
    NUMBER is the caller ID, an omitted or empty QUEUE the global scope ''."""
    raw = args[0] if args and args[0] else channel.caller_id
    queue = args[1] if len(args) > 1 else ""
    if queue and not valid_queue(queue):
        raise BadArgument("not a usable queue name")
    return number_key(raw, config.numbers), queue


def answer(channel, script: Script, config: Config, database, deadline=None, log=None) -> str:
    """Run one call's handler; on any failure set its fail-open values and log once.
    `log` (FastAGI's server log) takes the call's warnings instead of syslog.
    Returns 'ok', 'hangup' or 'failed'."""
    channel.log = log
    started = time.time()
    try:
        with Deadline(deadline):
            outcome = script.handle(channel, channel.args, config, database)
        result = "ok"
    except Hangup:
        return "hangup"
    except (Exception, CallDeadline) as error:
        fail(channel, script, config, error)
        outcome, result = Outcome("error"), "failed"
    if config.events.enabled:
        try:
            append(config.events.spool, line(script.name, channel.env.get("agi_uniqueid", ""), outcome, started))
        except OSError as error:
            warn(channel, script, config, "cannot record the call's outcome: %s ([log] events = off stops "
                                          "recording)" % describe(error))
    return result


def fail(channel, script: Script, config: Config, error: BaseException) -> None:
    """Log the failure once and set the handler's fail-open values."""
    warn(channel, script, config, "%s; failing open" % describe(error))
    try:
        script.fail_open(channel, config)
    except (Hangup, CommandFailed):
        pass  # the caller is gone, or Asterisk refused: nothing more to tell


def warn(channel, script: Script, config: Config, message: str) -> None:
    """One WARNING where the admin looks: the Asterisk log (the messages file keeps
    WARNING with Asterisk's default logger.conf) and syslog, or the channel's log
    (FastAGI's server log) when it has one."""
    log = channel.log
    if log is None:
        syslog_warning(script.name, message, config.syslog_facility)
    else:
        log("%s: %s" % (script.name, message))
    try:
        channel.warn("vipsticky %s: %s" % (script.name, message))
    except (Hangup, CommandFailed):
        pass


def run(script: Script) -> int:
    """main() of a per-call script. Always exits 0: a failure is a normal call (2 when a
    person at a terminal gets the usage instead)."""
    # Asterisk gives the script pipes, never a terminal: a terminal is a person, who would
    # otherwise wait for an environment that never comes.
    if os.isatty(0) or (sys.argv[1:] in (["--help"], ["-h"]) and os.isatty(1)):
        sys.stdout.write(usage(script))
        return 2
    try:
        channel = Channel.from_stdio(sys.argv[1:])
    except Hangup:
        return 0
    try:
        config = load(strict=False)
    except ConfigError as error:
        fail(channel, script, FALLBACK_CONFIG, error)
        return 0
    for problem in config.warnings:
        warn(channel, script, config, "config file %s: %s; the rest of it is used" % (config.path, problem))
    database = Database(config.database)
    try:
        # Bounded time whatever the database does: connect and every read are also
        # capped by connect_timeout; this is the backstop for everything together.
        patience = script.patience(config, channel.args) if script.patience else 0
        answer(channel, script, config, database,
               deadline=config.database.connect_timeout + DEADLINE_MARGIN + patience)
    finally:
        database.close()
    return 0


def usage(script: Script) -> str:
    """What a person who runs the script by hand reads: its module's docstring and how to try it."""
    return ("%s is an AGI script: Asterisk runs it from the dialplan and speaks AGI to it on stdin/stdout.\n\n"
            "%s\n\nTry it against the real config and database, as a call from 89130751580 would run it\n"
            "(ARGUMENTS: those of AGI() after the script's name, separated by spaces):\n"
            "  vipsticky try %s [ARGUMENTS] --callerid 89130751580\n"
            "or give it an environment by hand (the end of the input answers each command):\n"
            "  printf 'agi_request: %s\\nagi_callerid: 89130751580\\n\\n' | %s [ARGUMENTS]\n"
            % (script.name, sys.modules[script.handle.__module__].__doc__.strip(), script.name, script.name,
               script.name))


def describe(error: BaseException) -> str:
    """An error in words, for the log and the CLI; only a bug names its Python exception, for the report."""
    if isinstance(error, (DatabaseError, ConfigError, CommandFailed, BadArgument)):
        return printable(error, 300)
    if isinstance(error, CallDeadline):
        return "no answer from the database in time"
    if isinstance(error, OSError) and error.strerror:
        return printable("%s%s" % (error.filename and "%s: " % error.filename or "", error.strerror), 300)
    return "internal error (a bug: please report it): %s: %s" % (type(error).__name__, printable(error, 200))


def syslog_warning(name: str, message: str, facility: str) -> None:
    import syslog  # only a call with something to report pays for it
    syslog.openlog("vipsticky", syslog.LOG_PID, getattr(syslog, "LOG_" + facility.upper(), syslog.LOG_DAEMON))
    syslog.syslog(syslog.LOG_WARNING, "%s: %s" % (name, message))


class Deadline:
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
