"""A real Asterisk for the end-to-end tests: find a build, give it a private folder, run the
project's shipped dialplan in it, drive calls over AMI, read its logs, stop it.

Builds: the portable tarballs in ../shared/asterisk next to the checkout (unpacked once per
test session), or the Asterisk named by VIPSTICKY_ASTERISK (the path of its sbin/asterisk).
Each instance gets its own asterisk.conf, logger.conf, modules.conf, manager.conf, features.conf
(the shipped example as it is), queues.conf (the shipped example with Local agents as members
and short ring times) and the dialplan example AS SHIPPED, plus a file of test contexts: the
callers, the agents' extensions and an "outbound" context an attacker would like to reach.
The installed console scripts are linked into its agi-bin with `vipsticky install-agi`, and
Asterisk runs with VIPSTICKY_CONFIG in its environment, so the scripts use the test's database.
Options (test_from_wheel.py): the examples from another folder, or none until load_examples();
no scripts linked (the test links them); Asterisk running as another user (runuser).
"""
import base64
import glob
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set

from .ami import Manager, Message

REPO = Path(__file__).resolve().parents[2]
TARBALL_DIR = REPO.parent / "shared" / "asterisk"
OWN_BUILD = "VIPSTICKY_ASTERISK"
# The installed console scripts: beside the Python running the tests (the venv), else on PATH.
SCRIPTS_BIN = Path(sys.executable).parent if (Path(sys.executable).parent / "vipsticky").exists() \
    else Path(shutil.which("vipsticky") or sys.executable).parent
QUEUE = "support"  # the queue the shipped dialplan uses
AGENT_CONTEXT = "agents"  # the shipped examples' context for Local-channel members
DIAL_TIMEOUT = 2  # the test config's [queue support] dial_timeout: how long a bound agent rings
# The tests' vipsticky config beside its [database] section.
VIPSTICKY_INI = "[queue %s]\ndial_timeout = %d\n" % (QUEUE, DIAL_TIMEOUT)
MEMBERS = ("alena", "boris")  # the private queue's members
AGENTS = MEMBERS + ("dima",)  # dima has an extension in the agents context but is in no queue
FLAVOURS = {"conf": "extensions.conf.example", "ael": "extensions.ael.example"}
SOCKET_PATH_MAX = 107  # sun_path: the control socket's path must be shorter

# Modules the shipped dialplan and the test contexts need; start() checks they run.
REQUIRED_MODULES = ("app_queue", "app_dial", "app_stack", "app_verbose", "res_agi", "pbx_config",
                    "func_callerid", "func_strings", "func_devstate", "func_base64", "func_logic",
                    "bridge_builtin_features", "bridge_simple")
AEL_MODULES = ("pbx_ael", "res_ael_share")
OUR_CONFIG_FILES = ("asterisk", "modules", "logger", "manager", "features", "queues", "extensions")


class Unavailable(Exception):
    """No usable Asterisk: not there, not unpackable, or it did not start."""


# -- builds -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """Where one Asterisk comes from: a tarball to unpack, or a binary given by the user."""
    label: str  # "22.10.1", "20.20.1", or "own"
    tarball: Optional[Path] = None
    binary: Optional[Path] = None


@dataclass(frozen=True)
class Build:
    version: str  # what `asterisk -V` says, e.g. "Asterisk 22.10.1"
    binary: Path
    modules: Path  # astmoddir
    data: Path  # astvarlibdir and astdatadir: holds documentation/, without which the core stops


def sources():
    """([Source], reason): the Asterisk builds to test, or none and why."""
    own = os.environ.get(OWN_BUILD)
    if own:
        return [Source("own", binary=Path(own))], ""
    tarballs = sorted(TARBALL_DIR.glob("asterisk-*.tar.xz"), key=tarball_version, reverse=True)
    if tarballs:
        return [Source(".".join(map(str, tarball_version(path))), tarball=path) for path in tarballs], ""
    return [], ("real-Asterisk tests skipped because neither %s/asterisk-*.tar.xz nor $%s is there "
                "(set it to an sbin/asterisk to test your own build)" % (TARBALL_DIR, OWN_BUILD))


def tarball_version(path: Path):
    found = re.match(r"asterisk-(\d+)\.(\d+)\.(\d+)", path.name)
    return tuple(int(part) for part in found.groups()) if found else (0, 0, 0)


def prepare(source: Source, folder: Path) -> Build:
    """Unpack a tarball into folder (or find the parts of a user's build) and check the binary runs."""
    if source.tarball is not None:
        try:
            with tarfile.open(source.tarball) as archive:
                archive.extractall(folder)
        except (OSError, tarfile.TarError) as error:
            raise Unavailable("cannot unpack %s: %s" % (source.tarball, error))
        tree = folder / "asterisk"
        binary, modules, data = tree / "sbin" / "asterisk", tree / "lib/asterisk/modules", tree / "var/lib/asterisk"
    else:
        binary = source.binary
        if not binary.is_file():
            raise Unavailable("$%s=%s: no such file" % (OWN_BUILD, binary))
        tree = binary.resolve().parent.parent
        modules = Path(os.environ.get("VIPSTICKY_ASTERISK_MODULES") or first_dir(
            [tree / "lib/asterisk/modules", tree / "lib64/asterisk/modules"]
            + [Path(p) for p in sorted(glob.glob(str(tree / "lib/*/asterisk/modules")))]))
        data = Path(os.environ.get("VIPSTICKY_ASTERISK_DATA") or first_dir(
            [tree / "var/lib/asterisk", tree / "share/asterisk", Path("/var/lib/asterisk"),
             Path("/usr/share/asterisk")], inside="documentation"))
    try:
        version = subprocess.run([str(binary), "-V"], capture_output=True, text=True, timeout=20)
    except OSError as error:
        raise Unavailable("cannot run %s: %s" % (binary, error))
    if version.returncode != 0 or not version.stdout.startswith("Asterisk "):
        raise Unavailable("%s -V failed (missing runtime libraries? ./dev test installs them as root): %s"
                          % (binary, (version.stderr or version.stdout).strip()[-300:]))
    return Build(version.stdout.strip(), binary, modules, data)


def first_dir(candidates: Sequence[Path], inside: str = "") -> str:
    for candidate in candidates:
        if (candidate / inside).is_dir():
            return str(candidate)
    raise Unavailable("none of %s exists (set VIPSTICKY_ASTERISK_MODULES / VIPSTICKY_ASTERISK_DATA)"
                      % ", ".join(str(candidate / inside) for candidate in candidates))


# -- the test's own dialplan --------------------------------------------------------------
def e2e_contexts(agents: Sequence[str]) -> str:
    """extensions.conf text of the contexts the test adds beside the shipped example."""
    lines = [
        "; Test contexts of tests/e2e: the callers, the agents, and what an attacker aims at.",
        "[e2e-callers]",
        "; The trunk side of a test call: the caller ID the test chose (base64, so that commas,",
        "; quotes and the like pass AMI untouched), then the inbound context as a trunk delivers it.",
        'exten => call,1,GotoIf($["${E2E_CALLERID}" = ""]?inbound)  ; no caller ID at all',
        " same => n,Set(CALLERID(num)=${BASE64_DECODE(${E2E_CALLERID})})",
        " same => n(inbound),Goto(vipsticky-inbound,${E2E_DID},1)",
        "",
        "[%s]" % AGENT_CONTEXT,
        "; One extension per test agent (Local/NAME@agents/n). The global E2E_AGENT_NAME = ring",
        "; makes that agent ring forever; otherwise the agent answers and stays on the line.",
    ]
    for name in agents:
        lines.append('exten => %s,1,Goto(e2e-agent,${IF($["${E2E_AGENT_%s}" = "ring"]?ring:answer)},1)'
                     % (name, name))
    lines += [
        "",
        "[e2e-agent]",
        "exten => answer,1,Answer()",
        " same => n,Wait(120)",
        " same => n,Hangup()",
        "exten => ring,1,Ringing()",
        " same => n,Wait(120)",
        " same => n,Hangup()",
        "",
        "[outbound]",
        "; The destination an attacker would like to be put through to (toll fraud).",
        "exten => _X.,1,Verbose(1,E2E OUTBOUND REACHED ${EXTEN})",
        " same => n,Answer()",
        " same => n,Wait(120)",
        "",
    ]
    return "\n".join(lines)


def private_queues_conf(members: Sequence[str], ring_seconds: int, examples: Path = REPO) -> str:
    """queues.conf.example (of the folder examples) with its member lines swapped for Local
    agents, ringing each agent ring_seconds instead of 12 so that the tests stay quick."""
    text = (examples / "queues.conf.example").read_text()
    assert re.findall(r"(?m)^\[([^\]]+)\]", text)[-1] == QUEUE, "the members below must land in [%s]" % QUEUE
    text = "\n".join(line for line in text.splitlines() if not re.match(r"\s*member\s*=>", line))
    text, count = re.subn(r"(?m)^timeout\s*=\s*\d+", "timeout = %d" % ring_seconds, text)
    assert count == 1, "queues.conf.example has no timeout line to shorten"
    return text + "\n" + "".join("member => %s,0,%s\n" % (interface(name), name) for name in members)


def interface(agent: str) -> str:
    """The queue member interface of a test agent, as MEMBERINTERFACE holds it."""
    return "Local/%s@%s/n" % (agent, AGENT_CONTEXT)


def agent_phone(connect: Message) -> str:
    """The agent's handset in a call the queue connected (AgentConnect): the ;2 side of the
    member's Local channel, whose ;1 side is bridged with the caller."""
    return connect["DestChannel"][:-1] + "2"


def seconds_between(earlier: Message, later: Message) -> float:
    """Time between two AMI events by Asterisk's own clock (manager.conf timestampevents)."""
    return float(later["Timestamp"]) - float(earlier["Timestamp"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the log ----------------------------------------------------------------------------
LOG_LINE = re.compile(r"^\[[^\]]*\] (?P<level>[A-Z]+)\[\d+\](?:\[[^\]]*\])? (?P<source>[^:\s]+):? (?P<text>.*)$")
MODULE_NAME = re.compile(r"\b((?:app|bridge|cdr|cel|chan|codec|format|func|pbx|res)_\w+?)(?:\.so)?\b")
CONFIG_NAME = re.compile(r"([\w-]+)\.conf\b")
# Core sources that report for other modules (loading them, reading their config files).
REPORTERS = ("loader", "config", "config_options", "res_sorcery_config")
# What reads the shipped examples: any WARNING of theirs is about the examples.
DIALPLAN_READERS = ("pbx_config", "pbx_ael", "ael", "pval", "features_config")


def source_name(found: re.Match) -> str:
    """The source file of a log line without folder and extension: "app_queue" for app_queue.c."""
    return found.group("source").rsplit("/", 1)[-1].rsplit(".", 1)[0]


def startup_noise(line: str, needed_modules: Sequence[str]) -> bool:
    """An ERROR line Asterisk logs at start-up about a module the suite does not use: from
    that module (res_phoneprov.c: ...), or from the loader or a config reader about such a
    module or about a config file the suite does not write (chan_iax2 declined to load,
    Unable to load config file 'ari.conf'). Anything naming a needed module or one of the
    suite's config files, and anything from another core source, is not noise."""
    found = LOG_LINE.match(line)
    if not found or found.group("level") != "ERROR":
        return False
    source, text = source_name(found), found.group("text")
    if source not in REPORTERS and not (MODULE_NAME.fullmatch(source) and source not in needed_modules):
        return False
    return not (set(MODULE_NAME.findall(text)) & set(needed_modules)
                or set(CONFIG_NAME.findall(text)) & set(OUR_CONFIG_FILES))


# -- one running Asterisk ---------------------------------------------------------------
@dataclass
class Call:
    """One test call: `phone` is the caller's handset (the originate's ;1 side, where the test
    presses keys and hangs up), `line` the channel that runs the inbound dialplan (;2)."""
    callerid: str
    phone_id: str
    line_id: str
    phone: str = ""
    line: str = ""


@dataclass
class Asterisk:
    build: Build
    folder: Path  # the private folder: etc/, run/, log/, ...
    flavour: str  # "conf" or "ael"
    env: Dict[str, str]  # the process environment (VIPSTICKY_CONFIG points at the test's config)
    members: Sequence[str] = MEMBERS
    agents: Sequence[str] = AGENTS
    ring_seconds: int = 2
    port: int = field(default_factory=free_port)
    ami: Optional[Manager] = None
    process: Optional[subprocess.Popen] = None
    boot_output: int = 0  # bytes on stdout/stderr once booted
    stopping: Optional[subprocess.Popen] = None  # the `core stop now` client
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    # Where features.conf, queues.conf and the dialplan come from: the shipped examples of this
    # folder (a checkout, or what `vipsticky examples` wrote); None: an Asterisk that has none
    # of them yet, until load_examples().
    examples: Optional[Path] = REPO
    # Whose `vipsticky install-agi` links the scripts into agi-bin; None: left empty (the test links them).
    scripts_bin: Optional[Path] = SCRIPTS_BIN
    # "USER:GROUP": runuser and rungroup of asterisk.conf, and the owner of the folders Asterisk
    # writes (start it as root; the folder and the build must be readable by that user).
    # None: Asterisk runs as the invoking user.
    run_as: Optional[str] = None

    # -- configuration ------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.folder / "etc" / "asterisk.conf"

    @property
    def needed_modules(self):
        return REQUIRED_MODULES + (AEL_MODULES if self.flavour == "ael" else ())

    def configure(self) -> None:
        for name in ("etc", "agi-bin", "run", "log", "spool", "lib", "cache"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        control = self.folder / "run" / "asterisk.ctl"
        if len(str(control)) >= SOCKET_PATH_MAX:
            raise Unavailable("control socket path too long (%d bytes): %s" % (len(str(control)), control))
        etc = self.folder / "etc"
        directories = dict(astetcdir=etc, astmoddir=self.build.modules, astvarlibdir=self.build.data,
                           astdatadir=self.build.data, astkeydir=self.build.data,
                           astsbindir=self.build.binary.parent, astdbdir=self.folder / "lib",
                           astagidir=self.folder / "agi-bin", astspooldir=self.folder / "spool",
                           astrundir=self.folder / "run", astlogdir=self.folder / "log",
                           astcachedir=self.folder / "cache")
        options = "verbose = 3\n"
        if self.run_as:
            options += "runuser = %s\nrungroup = %s\n" % tuple(self.run_as.split(":"))
        files = {
            "asterisk.conf": "[directories]\n%s\n[options]\n%s"
                             % ("".join("%s => %s\n" % item for item in directories.items()), options),
            # autoload: the modules an installation loads. Those without config decline (noise,
            # filtered by name in problems()); start() checks the needed ones run.
            "modules.conf": "[modules]\nautoload = yes\n",
            # verbose in messages.log: the AGI scripts' VERBOSE lines land there; queue_log on.
            "logger.conf": "[general]\nqueue_log = yes\n[logfiles]\nmessages.log => notice,warning,error,verbose\n",
            # timestampevents: durations are measured on Asterisk's clock, not the test's.
            "manager.conf": "[general]\nenabled = yes\nbindaddr = 127.0.0.1\nport = %d\ntimestampevents = yes\n\n"
                            "[e2e]\nsecret = e2e\nread = all\nwrite = all\n" % self.port,
            "e2e-contexts.conf": e2e_contexts(self.agents),
        }
        for name, text in files.items():
            (etc / name).write_text(text)
        self.load_examples(self.examples)
        if self.run_as:
            user, group = self.run_as.split(":")
            for name in ("run", "log", "spool", "lib", "cache"):
                shutil.chown(self.folder / name, user, group)
        if self.scripts_bin is not None:
            linked = subprocess.run([str(self.scripts_bin / "vipsticky"), "install-agi", "--agi-dir",
                                     str(self.folder / "agi-bin")], capture_output=True, text=True, env=self.env)
            assert linked.returncode == 0, linked.stderr

    def load_examples(self, examples: Optional[Path]) -> None:
        """Write features.conf, queues.conf and the dialplan from the shipped examples in the
        folder examples: features.conf.example as it is, queues.conf.example with the test's
        members, the flavour's dialplan example as it is beside the test contexts. None: the
        files of an Asterisk vipsticky is not in yet (an empty features.conf and extensions.ael,
        a queues.conf without queues, only the test contexts). Asterisk reads them when it
        starts, or when the test reloads them."""
        self.examples = examples
        etc = self.folder / "etc"
        contexts = '#include "e2e-contexts.conf"\n'
        if examples is None:
            files = {"features.conf": "", "queues.conf": "[general]\n", "extensions.conf": contexts}
            if self.flavour == "ael":
                files["extensions.ael"] = "context default {\n    s => NoOp();\n};\n"
        else:
            files = {"features.conf": (examples / "features.conf.example").read_text(),
                     "queues.conf": private_queues_conf(self.members, self.ring_seconds, examples)}
            example = examples / FLAVOURS[self.flavour]
            if self.flavour == "conf":
                files["extensions.conf"] = '#include "%s"\n' % example + contexts
            else:
                shutil.copyfile(example, etc / "extensions.ael")
                files["extensions.conf"] = contexts
        for name, text in files.items():
            (etc / name).write_text(text)

    # -- life ------------------------------------------------------------------------------
    def start(self, timeout: float = 30) -> None:
        self.configure()
        output = open(self.folder / "stdout.log", "wb")
        self.process = subprocess.Popen([str(self.build.binary), "-C", str(self.conf), "-f", "-n"],
                                        stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                        env=self.env, start_new_session=True)
        output.close()
        deadline = time.monotonic() + timeout
        while self.rx("core waitfullybooted", check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise Unavailable("%s did not start: %s" % (self.build.version, self.tail("stdout.log")))
            time.sleep(0.05)
        running = set(re.findall(r"^(\w+)\.so\s.*\bRunning\b", self.cli("module show"), re.M))
        missing = sorted(set(self.needed_modules) - running)
        if missing:
            self.stop()
            raise Unavailable("%s: modules not running: %s; %s" % (self.build.version, ", ".join(missing),
                                                                   self.tail("log/messages.log")))
        self.ami = Manager(self.port, "e2e", "e2e")
        self.boot_output = (self.folder / "stdout.log").stat().st_size

    def stop(self, wait: bool = True) -> None:
        """`core stop now`. Asterisk takes most of a second to exit, idle or not: with
        wait=False the test goes on meanwhile and reaps it later with wait_stopped()."""
        if self.ami is not None:
            self.ami.close()
            self.ami = None
        if self.process is None or self.process.poll() is not None:
            return
        self.stopping = subprocess.Popen([str(self.build.binary), "-C", str(self.conf), "-rx", "core stop now"],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, env=self.env)
        if wait:
            self.wait_stopped()

    def wait_stopped(self, timeout: float = 10) -> None:
        """Wait for the process to exit after stop(); kill it when it does not."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(5)
        if self.stopping is not None:
            self.stopping.wait(5)

    def stopped(self) -> bool:
        """The process exited (and was reaped), and so did the `core stop now` client."""
        return all(process is None or process.poll() is not None for process in (self.process, self.stopping))

    def rx(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(self.build.binary), "-C", str(self.conf), "-rx", command],
                              capture_output=True, text=True, timeout=20, env=self.env)
        if check and done.returncode != 0:
            raise AssertionError("asterisk -rx %r: %s" % (command, done.stderr or done.stdout))
        return done

    def cli(self, command: str) -> str:
        return self.rx(command).stdout

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.folder / name
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # -- calls ---------------------------------------------------------------------------
    def call(self, callerid: str, did: str = "73843500000") -> Call:
        """Originate a call from `callerid` into the inbound context (via dialled number `did`).
        The caller's handset answers the call and stays on the line."""
        number = next(self._ids)
        call = Call(callerid, "e2e-phone-%d" % number, "e2e-line-%d" % number)
        encoded = base64.b64encode(callerid.encode("utf-8", "surrogateescape")).decode()
        self.ami.action("Originate", [
            ("Channel", "Local/call@e2e-callers/n"), ("Application", "Wait"), ("Data", "120"),
            ("Async", "true"), ("ChannelId", call.phone_id), ("OtherChannelId", call.line_id),
            ("Variable", "E2E_CALLERID=%s" % encoded), ("Variable", "E2E_DID=%s" % did)])
        call.line = self.ami.wait_for("Newchannel", Uniqueid=call.line_id)["Channel"]
        call.phone = self.ami.wait_for("Newchannel", Uniqueid=call.phone_id)["Channel"]
        return call

    def variables(self, uniqueid: str) -> Dict[str, str]:
        """The last value the dialplan or an AGI script gave each variable on a channel."""
        return {event["Variable"]: event.get("Value", "") for event in self.ami.find("VarSet", Uniqueid=uniqueid)}

    def wait_variable(self, uniqueid: str, name: str, timeout: float = 10) -> str:
        return self.ami.wait_for("VarSet", timeout, Uniqueid=uniqueid, Variable=name).get("Value", "")

    def press(self, channel: str, digit: str) -> None:
        """A key pressed on a handset: DTMF sent from that channel into the call."""
        self.ami.action("PlayDTMF", Channel=channel, Digit=digit, Duration="120")

    def hangup(self, channel: str) -> None:
        self.ami.action("Hangup", Channel=channel)

    def set_agent(self, agent: str, behaviour: str) -> None:
        """behaviour: "answer" or "ring" (rings until the queue or the Dial gives up)."""
        self.ami.action("Setvar", Variable="E2E_AGENT_%s" % agent, Value=behaviour)

    def pause(self, agent: str, paused: bool = True) -> None:
        self.ami.action("QueuePause", Interface=interface(agent), Queue=QUEUE, Paused="true" if paused else "false")

    def device_state(self, agent: str) -> str:
        return self.ami.action("Getvar", Variable="DEVICE_STATE(%s)" % interface(agent)).get("Value", "")

    def connected(self, call: Call, timeout: float = 15) -> Message:
        """The queue's AgentConnect event for this call (an agent answered it in the queue)."""
        return self.ami.wait_for("AgentConnect", timeout, Uniqueid=call.line_id)

    def remembered(self, call: Call, timeout: float = 10) -> str:
        """Wait until sticky_route ran twice in this call (lookup on the caller's channel, then
        remember: Queue()'s AGI argument there, or Dial()'s U() subroutine on the agent's
        channel); returns the last STICKY_STATUS."""
        def statuses():
            return self.ami.find("VarSet", Linkedid=call.phone_id, Variable="STICKY_STATUS")
        assert poll(lambda: len(statuses()) >= 2, timeout), "sticky_route remember did not run: %s" % statuses()
        return statuses()[-1].get("Value", "")

    def ended(self, call: Call, timeout: float = 10) -> None:
        """Hang up the caller's handset; wait until every channel of the call is gone and the
        members' devices are idle again (a later lookup would find them busy)."""
        self.hangup(call.phone)

        def gone():
            made = {event["Uniqueid"] for event in self.ami.find("Newchannel", Linkedid=call.phone_id)}
            return made <= {event["Uniqueid"] for event in self.ami.find("Hangup")}
        assert poll(gone, timeout), "channels of %r still up" % call.callerid
        assert poll(lambda: all(self.device_state(agent) == "NOT_INUSE" for agent in self.members), timeout)

    def channels_of(self, agent: str, since: int = 0) -> List[Message]:
        """Channels created for an agent's extension (each ring of that agent makes one)."""
        prefix = "Local/%s@%s-" % (agent, AGENT_CONTEXT)
        return [event for event in self.ami.find("Newchannel", since) if event["Channel"].startswith(prefix)]

    def destinations(self) -> Set[str]:
        """Every destination a channel was created for, as Local/EXTEN@CONTEXT (the
        channel name without its -0000000a;1 suffix)."""
        return {re.sub(r"-[0-9a-f]+;\d$", "", event["Channel"]) for event in self.ami.find("Newchannel")}

    def still_talking(self, talker: str, listener: str, digit: str = "5", tries: int = 3) -> bool:
        """Caller and agent are still bridged: a key pressed on one handset reaches the other.
        (DTMFBegin: a handset without media ends an emulated digit only at its next frame.
        A key pressed while a channel is on its way back into the bridge is lost, as it
        would be in a real call: the test presses again.)"""
        for attempt in range(tries):
            since = self.ami.mark()
            self.press(talker, digit)
            if poll(lambda: self.ami.find("DTMFBegin", since, Channel=listener, Digit=digit, Direction="Received"),
                    1.5):
                return True
        return False

    # -- logs ------------------------------------------------------------------------------
    def log_lines(self) -> List[str]:
        path = self.folder / "log" / "messages.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def logged(self, level: str, *words: str) -> List[str]:
        """messages.log lines of this level that contain every word."""
        return [line for line in self.log_lines()
                if re.match(r"^\[[^\]]*\] %s\[" % level, line) and all(word in line for word in words)]

    def queue_log(self) -> List[List[str]]:
        """queue_log rows: time|callid|queue|agent|event|data..."""
        path = self.folder / "log" / "queue_log"
        return [line.split("|") for line in path.read_text().splitlines()] if path.exists() else []

    def problems(self) -> List[str]:
        """What the project's dialplan or scripts must never cause: an ERROR line or a Python
        traceback in the Asterisk log, or anything on Asterisk's stdout/stderr after start-up
        (a per-call script's stderr goes there; a normal call writes nothing). Asterisk's
        start-up noise about modules and config files the suite does not use is left out."""
        problems, booted = [], False
        for line in self.log_lines():
            booted = booted or "Asterisk Ready" in line
            found = LOG_LINE.match(line)
            level, source = (found.group("level"), source_name(found)) if found else ("", "")
            if ("Traceback" in line or (level == "ERROR" and (booted or not startup_noise(line, self.needed_modules)))
                    or (level == "WARNING" and source in DIALPLAN_READERS)):
                problems.append(line)
        with open(self.folder / "stdout.log", "rb") as output:
            output.seek(self.boot_output)
            problems += ["stdout/stderr: " + line for line in output.read().decode(errors="replace").splitlines()]
        return problems


def private_folder(preferred: Path) -> Path:
    """preferred, or a fresh folder in /tmp when preferred would make the control socket's
    path too long (a long TMPDIR)."""
    folder = preferred if len(str(preferred / "run" / "asterisk.ctl")) < SOCKET_PATH_MAX \
        else Path(tempfile.mkdtemp(prefix="vs-e2e-", dir="/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def poll(probe: Callable[[], object], timeout: float = 10, interval: float = 0.1):
    """probe()'s first true result within timeout seconds, else its last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)
