"""The Asterisk stand-in: speaks AGI to a script as res_agi does, for the demo and the tests.

It does what res_agi does: writes the agi_* environment and an empty line, reads
one command per line, parses it as Asterisk does (white space, double quotes,
backslash escapes) and answers "200 result=...". It can hang up at any step the
three ways a channel goes away: SIGHUP (per-call scripts), a HANGUP line
(FastAGI) or a closed stdin. It records every command and what was set.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

HANGUP_WAYS = ("sighup", "line", "eof")
KNOWN_COMMANDS = {  # command words -> (fewest, most) arguments after them
    ("SET", "VARIABLE"): (2, 2),
    ("GET", "VARIABLE"): (1, 1),
    ("GET", "FULL", "VARIABLE"): (1, 2),
    ("VERBOSE",): (1, 2),
    ("EXEC",): (1, 2),
    ("STREAM", "FILE"): (2, 3),
    ("NOOP",): (0, 99),
    ("ANSWER",): (0, 0),
}
LOG_LEVELS = ("ERROR", "WARNING", "NOTICE", "DEBUG", "VERBOSE", "DTMF")
SUBSTITUTION = re.compile(r"\$\{([^{}]*)\}")
DEAD_CHANNEL = "511 Command Not Permitted on a dead channel or intercept routine"


@dataclass
class Asterisk:
    """What the simulated Asterisk knows: channel variables, device states, queue
    members (interface -> paused) and which sound files exist."""
    variables: dict[str, str] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    queues: dict[str, dict[str, bool]] = field(default_factory=dict)
    sounds: set[str] = field(default_factory=lambda: {"beep"})

    def evaluate(self, expression: str) -> str:
        """Each ${NAME} or ${FUNCTION(...)} in expression replaced, as Asterisk does."""
        return SUBSTITUTION.sub(lambda found: self.value(found.group(1)), expression)

    def value(self, inner: str) -> str:
        """A variable, or one of the few dialplan functions the scripts use."""
        name, _, rest = inner.partition("(")
        arguments = rest[:-1].split(",") if rest.endswith(")") else []
        if name == "DEVICE_STATE" and len(arguments) == 1:
            return self.devices.get(arguments[0], "INVALID")
        if name == "QUEUE_EXISTS" and len(arguments) == 1:
            return "1" if arguments[0] in self.queues else "0"
        if name == "QUEUE_MEMBER_LIST" and len(arguments) == 1:
            return ",".join(self.queues.get(arguments[0], {}))
        if name == "QUEUE_MEMBER" and len(arguments) == 3 and arguments[1] == "paused":
            members = self.queues.get(arguments[0], {})
            return "1" if members.get(arguments[2]) else "0"  # 0 for non-members, as Asterisk does
        return self.variables.get(inner, "")


@dataclass
class Call:
    """What one AGI session did."""
    script: str
    args: list[str]
    commands: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    verbose: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # Log(WARNING,...) run through EXEC
    played: list[str] = field(default_factory=list)
    exit_code: int | None = None
    stderr: str = ""
    elapsed: float = 0.0
    hung_up: bool = False
    timed_out: bool = False


def parse_command(line: str) -> tuple[list[str], bool]:
    """Split an AGI command line as res_agi's parse_args does; ok is False for an
    unterminated quote or a trailing backslash."""
    words, current, quoted, escaped, in_word = [], [], False, False, False
    for ch in line:
        if escaped:
            current.append(ch)
            escaped, in_word = False, True
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted, in_word = not quoted, True
        elif ch in " \t" and not quoted:
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(ch)
            in_word = True
    if in_word:
        words.append("".join(current))
    return words, not quoted and not escaped


class Peer:
    def __init__(self, asterisk: Asterisk | None = None, hangup: tuple[int, str] | None = None):
        """hangup=(step, way): when command number `step` (0 = the first) arrives,
        hang up by `way` instead of answering it; step -1 hangs up during the
        environment, before the script's first command."""
        self.asterisk = asterisk or Asterisk()
        if hangup is not None and hangup[1] not in HANGUP_WAYS:
            raise ValueError("hangup way must be one of %s" % ", ".join(HANGUP_WAYS))
        self.hangup = hangup

    # -- what Asterisk sends -------------------------------------------------------
    @staticmethod
    def environment(script: str, args: list[str], callerid: str, network: bool = False,
                    extra: dict[str, str] | None = None, uniqueid: str = "1700000000.1") -> list[tuple[str, str]]:
        # res_agi sends a FastAGI server agi_network and agi_network_script first.
        env = [("agi_network", "yes"), ("agi_network_script", script)] if network else []
        env += [
            ("agi_request", ("agi://127.0.0.1/%s" % script) if network else script),
            ("agi_channel", "PJSIP/trunk-00000001"), ("agi_language", "en"), ("agi_type", "PJSIP"),
            ("agi_uniqueid", uniqueid), ("agi_version", "22.0.0"),
            ("agi_callerid", callerid), ("agi_calleridname", "unknown"), ("agi_callingpres", "0"),
            ("agi_callingani2", "0"), ("agi_callington", "0"), ("agi_callingtns", "0"),
            ("agi_dnid", "3843000000"), ("agi_rdnis", "unknown"), ("agi_context", "from-trunk"),
            ("agi_extension", "s"), ("agi_priority", "3"), ("agi_enhanced", "0.0"),
            ("agi_accountcode", ""), ("agi_threadid", "140000000000000"),
        ]
        env.extend(extra.items() if extra else ())
        env.extend(("agi_arg_%d" % (index + 1), value) for index, value in enumerate(args))
        return env

    def reply(self, call: Call, line: str) -> str:
        """Asterisk's answer to one command line."""
        words, ok = parse_command(line)
        command = None
        for length in (3, 2, 1):
            if tuple(word.upper() for word in words[:length]) in KNOWN_COMMANDS:
                command = tuple(word.upper() for word in words[:length])
                break
        if command is None or not ok:
            call.malformed.append(line)
            return "510 Invalid or unknown command"
        arguments = words[len(command):]
        fewest, most = KNOWN_COMMANDS[command]
        if not fewest <= len(arguments) <= most:
            call.malformed.append(line)
            return "520-Invalid command syntax.  Proper usage follows:\nUsage: ...\n520 End of proper usage."
        if command == ("SET", "VARIABLE"):
            call.variables[arguments[0]] = arguments[1]
            self.asterisk.variables[arguments[0]] = arguments[1]
            return "200 result=1"
        if command == ("GET", "VARIABLE"):
            if arguments[0] in self.asterisk.variables:
                return "200 result=1 (%s)" % self.asterisk.variables[arguments[0]]
            return "200 result=0"
        if command == ("GET", "FULL", "VARIABLE"):
            return "200 result=1 (%s)" % self.asterisk.evaluate(arguments[0])
        if command == ("VERBOSE",):
            call.verbose.append(arguments[0])
            return "200 result=1"
        if command == ("EXEC",):
            if arguments[0].lower() == "ringing":
                return "200 result=0"
            level, _, message = (arguments[1] if len(arguments) > 1 else "").partition(",")
            if arguments[0].lower() != "log" or level.upper() not in LOG_LEVELS:
                return "200 result=-2"  # what res_agi answers for an application it cannot run
            if level.upper() == "WARNING":
                call.warnings.append(message)
            return "200 result=0"
        if command == ("STREAM", "FILE"):
            if arguments[0] not in self.asterisk.sounds:
                return "200 result=-1 endpos=0"
            call.played.append(arguments[0])
            return "200 result=0 endpos=8000"
        return "200 result=0"

    # -- one conversation over any pair of byte streams -----------------------------
    def converse(self, call: Call, env, reader, writer, hang_up_signal=None) -> None:
        def send(text):
            writer.write(text.replace("\x00", "").encode("utf-8", "surrogateescape"))
            writer.flush()

        try:
            if self.hangup and self.hangup[0] < 0 and self.hangup[1] == "eof":
                send("".join("%s: %s\n" % item for item in env[:3]))  # cut off mid-environment
                self._hang_up(call, send, writer, hang_up_signal)
                return
            send("".join("%s: %s\n" % item for item in env) + "\n")
            if self.hangup and self.hangup[0] < 0:
                self._hang_up(call, send, writer, hang_up_signal)
            step = 0
            while True:
                raw = reader.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\n")
                call.commands.append(line)
                if call.hung_up:
                    send(DEAD_CHANNEL + "\n")
                    continue
                if self.hangup and self.hangup[0] == step:
                    self._hang_up(call, send, writer, hang_up_signal)
                    if self.hangup[1] == "eof":
                        return
                    send(DEAD_CHANNEL + "\n")
                else:
                    send(self.reply(call, line) + "\n")
                step += 1
        except (BrokenPipeError, ConnectionResetError):
            return  # the script left without reading: Asterisk shrugs too

    def _hang_up(self, call, send, writer, hang_up_signal):
        call.hung_up = True
        way = self.hangup[1]
        if way == "sighup" and hang_up_signal:
            hang_up_signal()
        elif way == "line" or way == "sighup":
            send("HANGUP\n")
        else:
            writer.close()

    # -- ways to run a script ----------------------------------------------------------
    def run_script(self, script: str, args: list[str], callerid: str = "", timeout: float = 30.0,
                   process_env: dict[str, str] | None = None, command: list[str] | None = None,
                   uniqueid: str = "1700000000.1") -> Call:
        """Spawn the per-call script as Asterisk does (arguments in argv and env); uniqueid
        is the channel's (agi_uniqueid)."""
        call = Call(script=script, args=list(args))
        argv = (command or script_command(script)) + [arg.replace("\x00", "") for arg in args]
        env = dict(os.environ if process_env is None else process_env)
        started = time.monotonic()
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=env)
        errors = []
        reader = threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)
        reader.start()

        def kill_when_late():
            call.timed_out = True
            process.kill()
        watchdog = threading.Timer(timeout, kill_when_late)
        watchdog.start()
        try:
            self.converse(call, self.environment(script, args, callerid, uniqueid=uniqueid), process.stdout,
                          process.stdin,
                          hang_up_signal=lambda: process.send_signal(signal.SIGHUP))
            try:
                process.stdin.close()
            except OSError:
                pass  # already closed by an EOF hangup
            call.exit_code = process.wait()
        finally:
            watchdog.cancel()
        reader.join(timeout=5)
        call.stderr = (errors[0] if errors else b"").decode("utf-8", "replace")
        call.elapsed = time.monotonic() - started
        return call

    def call_handler(self, script: str, answer_call, args: list[str], callerid: str = "") -> Call:
        """Drive an in-process handler over a socket pair, as a FastAGI connection:
        answer_call(rfile, wfile) must build the channel and answer the call."""
        call = Call(script=script, args=list(args))
        ours, theirs = socket.socketpair()
        started = time.monotonic()
        worker = threading.Thread(target=_serve_socket, args=(answer_call, theirs), daemon=True)
        worker.start()
        reader, writer = ours.makefile("rb"), ours.makefile("wb")
        try:
            self.converse(call, self.environment(script, args, callerid, network=True), reader, writer)
        finally:
            try:
                writer.close()
            except OSError:
                pass
            ours.shutdown(socket.SHUT_RDWR)
            worker.join(timeout=30)
            reader.close()
            ours.close()
        call.exit_code = 0 if not worker.is_alive() else None
        call.elapsed = time.monotonic() - started
        return call

    def call_fastagi(self, address: tuple[str, int], script: str, args: list[str], callerid: str = "",
                     timeout: float = 30.0) -> Call:
        """Connect to a FastAGI server as Asterisk's AGI(agi://host:port/script) does."""
        call = Call(script=script, args=list(args))
        started = time.monotonic()
        with socket.create_connection(address, timeout=timeout) as connection:
            reader, writer = connection.makefile("rb"), connection.makefile("wb")
            try:
                self.converse(call, self.environment(script, args, callerid, network=True), reader, writer)
            except socket.timeout:
                call.timed_out = True
            finally:
                for stream in (reader, writer):
                    try:
                        stream.close()
                    except OSError:
                        pass
        call.exit_code = 0
        call.elapsed = time.monotonic() - started
        return call


def _serve_socket(answer_call, connection):
    rfile, wfile = connection.makefile("r", encoding="utf-8", errors="replace", newline="\n"), \
        connection.makefile("w", encoding="utf-8", errors="replace", newline="\n")
    try:
        answer_call(rfile, wfile)
    finally:
        for stream in (wfile, rfile):
            try:
                stream.close()
            except OSError:
                pass
        connection.close()


def script_command(script: str) -> list[str]:
    """How Asterisk would start the script: the installed console script, found
    beside this interpreter (the venv's bin) or on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), script)
    if os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which(script)
    if found:
        return [found]
    return [sys.executable, "-m", "agi_scripts." + script]
