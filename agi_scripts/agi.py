"""The AGI wire protocol: one Asterisk channel seen through pyst2, the only user of pyst2.

It quotes every value it sends (a label typed into a web form must not become a
second AGI command), and turns every way a channel can go away (SIGHUP, a HANGUP
line, EOF, 511, a broken pipe) into one Hangup exception.
"""
import io
import os
import signal
import sys

from asterisk.agi import AGI, AGIAppError, AGIError, AGIHangup, AGIInvalidCommand, AGIResultHangup, AGIUsageError

from .rules import DIGITS, printable

# What res_agi sends every script before the arguments (Asterisk 18 to 22).
STANDARD_ENV = frozenset((
    "agi_request", "agi_channel", "agi_language", "agi_type", "agi_uniqueid", "agi_version", "agi_callerid",
    "agi_calleridname", "agi_callingpres", "agi_callingani2", "agi_callington", "agi_callingtns", "agi_dnid",
    "agi_rdnis", "agi_context", "agi_extension", "agi_priority", "agi_enhanced", "agi_accountcode",
    "agi_threadid"))
MAX_VALUE = 500  # well inside Asterisk's AGI line buffer (2048): a longer line would be split


class Hangup(Exception):
    """The channel is gone: nothing more can be said to Asterisk."""


class CommandFailed(Exception):
    """Asterisk answered a command with a failure (result=-1, 510, 520)."""


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
    def __init__(self, stream):
        self.stream = stream
        self.by_hand = False  # Channel.from_stdio: the end of the input answers "200 result=1"

    def readline(self):
        line = self.stream.readline()
        if line and not is_reply(line):
            raise _OutOfStep()
        if not line and self.by_hand:
            return "200 result=1\n"
        return line


def is_reply(line: str) -> bool:
    """What res_agi answers a command with: 200 result=..., 510/511/520 (5NN and a space,
    or a dash for 520's several lines), or HANGUP."""
    return line.startswith(("200 result=", "HANGUP")) or (
        line[:1] == "5" and line[1:2] in ("1", "2") and line[2:3] in DIGITS and line[3:4] in (" ", "-"))


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
        self.log = None  # where the call's warnings go besides Asterisk: None is syslog (call.warn)

    @classmethod
    def from_stdio(cls, args):
        """The per-call script's channel: Asterisk on stdin/stdout, SIGHUP on hangup."""
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="\n")
        stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="replace", newline="\n",
                                  write_through=True)
        channel = cls(_AGI(stdin, stdout, watch_sighup=True), args)
        if channel.env and "agi_channel" not in channel.env:
            # Typed or piped by a person (printf 'agi_request: vip_or_not\nagi_callerid: ...\n\n' |
            # vip_or_not): res_agi sends agi_channel second, right after agi_request, before any
            # value a caller controls, so a line feed in a caller ID or argument that cuts the
            # environment short leaves agi_channel in it, and _catch_up still skips the rest.
            # By hand there is no rest to skip; each command is printed, and the end of the input
            # answers "200 result=1" so that the script goes on to its last command.
            channel._agi.stdin.by_hand = True
        else:
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

    def warn(self, message: str) -> None:
        """A WARNING in the Asterisk log (app_verbose's Log(); EXEC does not expand ${...},
        and Log takes the rest of its argument, commas included, as the message)."""
        self._execute("EXEC", "Log", quote("WARNING," + message))

    def ring(self) -> None:
        """The caller hears ringing while the script works on (app_queue's r option does the same)."""
        self._execute("EXEC", "Ringing", '""')

    def play(self, sound: str) -> bool:
        """Play a sound; a missing or broken file is reported, never raised."""
        try:
            code, _ = self._execute("STREAM FILE", quote(sound), '""', 0)["result"]
        except CommandFailed:
            return False
        return code != "-1"
