"""Hangups (issue 4, item 4): the peer hangs up at every step of every script, each way a
channel goes away (SIGHUP, a HANGUP line, a closed stdin), on SQLite and MariaDB.

For each scenario a normal run first gives N, the number of commands the script sends;
then the peer hangs up at step -1 (right after the environment, or in the middle of it
for 'eof') and at every step 0..N (N: after the last command, i.e. never). Every run is
a real process spawned as Asterisk spawns it (Setup.run) and must exit 0 without a word
on stderr, send nothing after the command it was in the middle of, set nothing a normal
run would not set, and leave no half-written state: a binding is absent or complete
(agent, expiry), a delnum has deleted all it should or nothing. The same matrix for the
ways 'line' and 'eof' runs through the FastAGI server, which must serve normally after.

One cell cannot pass as "exit 0": SIGHUP at step -1 with a plain spawn. The peer signals
microseconds after exec, while the interpreter is still starting, before any Python code
(and so any SIGHUP handler) exists; the default action kills the process. Asterisk does the
same to a script whose caller hangs up during its start. That cell therefore accepts "killed
by SIGHUP, nothing sent, nothing written", and a second variant (ReadyPeer) sends the same
SIGHUP once the script has installed its handler, where exit 0 is required.
"""
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import pytest

from agi_scripts.asterisk_standin import Asterisk, Peer
from utils import FastAGIServer, assert_clean, report_problems


WORKERS = 3
TTL = 86400
SLACK = 600  # seconds of clock movement tolerated between a write and the check
OLD_TTL = 600
VIP_LABEL = 'Hang "up" \\ test'


@dataclass
class Scenario:
    name: str
    script: str
    args: Callable[[str], List[str]]            # number -> AGI arguments
    callerid: Callable[[str], str]
    commands: int                               # what a normal run sends (checked against one)
    variables: Dict[str, str]                   # what a normal run sets
    bindings: Dict[str, str] = field(default_factory=dict)   # queue -> agent, before the call
    vip: bool = False
    member_interface: Optional[str] = None
    needs_answers: int = 0                      # commands answered before the script writes (remember/delnum)
    kind: str = "read"                          # read | remember | remember-over | delnum-all | delnum-queue

    def asterisk(self) -> Asterisk:
        variables = {"MEMBERINTERFACE": self.member_interface} if self.member_interface else {}
        return Asterisk(variables=variables,
                        devices={"PJSIP/alena": "NOT_INUSE", "Local/alice@agents/n": "NOT_INUSE"},
                        queues={"support": {"PJSIP/alena": False, "Local/alice@agents/n": False}})


SCENARIOS = [
    Scenario("vip-or-not-vip", "vip_or_not", lambda n: [n], lambda n: "", 3,
             {"QUEUE_PRIO": "30", "VIP": "1", "VIP_LABEL": VIP_LABEL}, vip=True),
    Scenario("vip-or-not-callerid", "vip_or_not", lambda n: [], lambda n: n, 3,
             {"QUEUE_PRIO": "5", "VIP": "0", "VIP_LABEL": ""}),
    # SET timeout, GET QUEUE_EXISTS|DEVICE_STATE|QUEUE_MEMBER_LIST, GET QUEUE_MEMBER paused, SET agent, SET status
    Scenario("lookup-found-queue", "sticky_route", lambda n: ["lookup", n, "support"], lambda n: "", 5,
             {"STICKY_DIAL_TIMEOUT": "20", "STICKY_AGENT": "PJSIP/alena", "STICKY_STATUS": "found"},
             bindings={"support": "PJSIP/alena"}),
    Scenario("lookup-found-global", "sticky_route", lambda n: ["lookup"], lambda n: n, 4,
             {"STICKY_DIAL_TIMEOUT": "20", "STICKY_AGENT": "PJSIP/alena", "STICKY_STATUS": "found"},
             bindings={"": "PJSIP/alena"}),
    Scenario("remember-agent", "sticky_route", lambda n: ["remember", n, "support", "PJSIP/alena"],
             lambda n: "", 1, {"STICKY_STATUS": "stored"}, kind="remember"),
    Scenario("remember-over-old", "sticky_route", lambda n: ["remember", n, "support", "PJSIP/alena"],
             lambda n: "", 1, {"STICKY_STATUS": "stored"}, bindings={"support": "PJSIP/boris"},
             kind="remember-over"),
    Scenario("remember-member", "sticky_route", lambda n: ["remember", n, "support"], lambda n: "", 2,
             {"STICKY_STATUS": "stored"}, member_interface="Local/alice@agents/n", needs_answers=1,
             kind="remember"),
    Scenario("delnum-all", "delnum", lambda n: [n], lambda n: "", 2, {"DELNUM_STATUS": "deleted"},
             bindings={"": "PJSIP/alena", "support": "Local/alice@agents/n"}, kind="delnum-all"),
    Scenario("delnum-queue", "delnum", lambda n: [n, "support"], lambda n: n, 2, {"DELNUM_STATUS": "deleted"},
             bindings={"": "PJSIP/alena", "support": "Local/alice@agents/n"}, kind="delnum-queue"),
]
REMEMBERED = {"remember-agent": "PJSIP/alena", "remember-over-old": "PJSIP/alena",
              "remember-member": "Local/alice@agents/n"}


class Numbers:
    """A fresh caller per run, so that every run owns its rows and runs can overlap."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            self.count += 1
            number = "8913%07d" % self.count
        return number, "7" + number[1:]


def prepare(setup, scenario: Scenario, key: str) -> None:
    database = setup.database()
    try:
        if scenario.vip:
            database.vip_add(key, 30, VIP_LABEL)
        for queue, agent in scenario.bindings.items():
            database.remember(key, queue, agent, OLD_TTL if scenario.kind == "remember-over" else TTL)
    finally:
        database.close()


class ReadyPeer(Peer):
    """Sends SIGHUP only once the script has a handler for it (SigCgt in /proc), so step -1
    means "hung up before the first command" rather than "while the interpreter starts"."""

    def _hang_up(self, call, send, writer, hang_up_signal):
        if self.hangup[1] == "sighup" and hang_up_signal is not None:
            process = next(cell.cell_contents for cell in hang_up_signal.__closure__
                           if hasattr(cell.cell_contents, "pid"))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and process.poll() is None:
                if _catches_sighup(process.pid):
                    break
                time.sleep(0.001)
        super()._hang_up(call, send, writer, hang_up_signal)


def _catches_sighup(pid: int) -> bool:
    try:
        with open("/proc/%d/status" % pid) as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    except OSError:
        pass
    return False


@dataclass
class Run:
    step: int
    way: str                 # sighup | line | eof, or "sighup-ready" (ReadyPeer), or "none"
    number: str
    key: str
    call: object = None


def expected_commands(step: int, way: str, total: int) -> int:
    """How many commands the peer records: up to and including the one it hung up on;
    at step -1 only the HANGUP-line way lets the script send its first command."""
    if step < 0:
        return min(1, total) if way == "line" else 0
    return min(step + 1, total)


def written(run: Run, scenario: Scenario, transport: str, killed: bool) -> bool:
    """Whether remember/delnum must have reached the database."""
    if killed:
        return False
    if run.way == "eof" and run.step < 0:
        return False  # cut mid-environment: Asterisk was gone before the script could start
    answered = scenario.commands if run.step > scenario.commands else max(run.step, 0)
    return answered >= scenario.needs_answers


def check_run(run: Run, scenario: Scenario, normal, rows, now, transport: str) -> List[str]:
    call = run.call
    problems = []
    killed = (transport == "spawn" and run.way == "sighup" and run.step < 0
              and call.exit_code == -signal.SIGHUP)
    if killed:
        if call.commands:
            problems.append("killed by SIGHUP after sending %s" % call.commands)
    elif call.exit_code != 0:
        problems.append("exit code %r" % call.exit_code)
    if call.timed_out:
        problems.append("timed out")
    if call.stderr:
        problems.append("stderr %r" % call.stderr[:300])
    if call.malformed:
        problems.append("malformed %r" % call.malformed)
    # Nothing after the command it was in the middle of, and nothing a normal run would not send.
    limit = run.step + 2 if run.step >= 0 else 1
    if len(call.commands) > limit:
        problems.append("%d commands after a hangup at step %d: %s" % (len(call.commands), run.step, call.commands))
    if call.commands != normal.commands[:len(call.commands)]:
        problems.append("commands %s are not a prefix of the normal %s" % (call.commands, normal.commands))
    if run.way == "sighup-ready":
        # The signal follows the handler's installation by a poll interval: the script may
        # already be in its first command (then it gets 511) or not have sent any.
        wanted = {0, min(1, scenario.commands)}
    else:
        wanted = {expected_commands(run.step, run.way, scenario.commands)}
    if not killed and len(call.commands) not in wanted:
        problems.append("%d commands, expected %s: %s" % (len(call.commands), sorted(wanted), call.commands))
    for name, value in call.variables.items():
        if normal.variables.get(name) != value:
            problems.append("set %s=%r, a normal run sets %r" % (name, value, normal.variables.get(name)))
    problems.extend(check_state(run, scenario, rows, now, transport, killed))
    return problems


def check_state(run, scenario, rows, now, transport, killed) -> List[str]:
    """rows: queue -> (agent, expires_at) of this run's key."""
    problems = []
    must_write = written(run, scenario, transport, killed)
    fresh = lambda expires: now + TTL - SLACK < expires <= now + TTL + SLACK  # noqa: E731
    if scenario.kind == "read":
        if set(rows) != set(scenario.bindings) or any(rows[q][0] != a for q, a in scenario.bindings.items()):
            problems.append("a read-only call changed the bindings: %s" % rows)
    elif scenario.kind == "remember":
        agent = REMEMBERED[scenario.name]
        if set(rows) - {"support"}:
            problems.append("unexpected rows %s" % rows)
        if "support" in rows and not (rows["support"][0] == agent and fresh(rows["support"][1])):
            problems.append("half-written binding %s" % (rows["support"],))
        if ("support" in rows) != must_write:
            problems.append("binding %s, expected it %s" % (rows.get("support"), "stored" if must_write else "absent"))
        if run.call.variables.get("STICKY_STATUS") == "stored" and "support" not in rows:
            problems.append("acknowledged as stored but not in the table")
    elif scenario.kind == "remember-over":
        row = rows.get("support")
        old = row is not None and row[0] == "PJSIP/boris" and now < row[1] <= now + OLD_TTL
        new = row is not None and row[0] == "PJSIP/alena" and fresh(row[1])
        if set(rows) != {"support"} or not (old or new):
            problems.append("binding neither the old one nor the new one: %s" % rows)
        elif new != must_write:
            problems.append("binding %s, expected the %s one" % (row, "new" if must_write else "old"))
    elif scenario.kind == "delnum-all":
        if rows and set(rows) != set(scenario.bindings):
            problems.append("delnum deleted part of the bindings: %s" % rows)
        if bool(rows) == must_write:
            problems.append("bindings %s, expected them %s" % (rows, "deleted" if must_write else "kept"))
    elif scenario.kind == "delnum-queue":
        if "" not in rows or rows[""][0] != "PJSIP/alena":
            problems.append("delnum for queue support touched the global binding: %s" % rows)
        if ("support" in rows) == must_write:
            problems.append("support binding %s, expected it %s" % (rows.get("support"),
                                                                    "deleted" if must_write else "kept"))
    return problems


def rows_by_key(setup):
    """(VIP keys, {number key: {queue: (agent, expires_at)}}, the database's now)."""
    vips, bindings, now = setup.query("SELECT number_key FROM vip_numbers",
                                      "SELECT number, queue, agent, expires_at FROM numbers_remember")
    by_key: Dict[str, Dict[str, tuple]] = {}
    for number, queue, agent, expires_at in bindings:
        by_key.setdefault(number, {})[queue] = (agent, int(expires_at))
    return {row[0] for row in vips}, by_key, now


def check_run_and_rows(run: Run, scenario: Scenario, normal, tables, transport: str) -> List[str]:
    """check_run on this run's rows of tables (rows_by_key), and the VIP row still there."""
    vip_keys, by_key, now = tables
    found = check_run(run, scenario, normal, by_key.get(run.key, {}), now, transport)
    if scenario.vip and run.key not in vip_keys:
        found.append("the VIP row went away")
    return found


def report(problems, total):
    report_problems(problems, total, "hangup runs", shown=20)


# -- per-call scripts ---------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_hangup_every_step_per_call(setup, scenario):
    numbers = Numbers()
    number, key = numbers.next()
    prepare(setup, scenario, key)
    normal = setup.run(scenario.script, scenario.args(number), asterisk=scenario.asterisk(),
                       callerid=scenario.callerid(number), timeout=15)
    assert_clean(normal)
    assert normal.variables == scenario.variables
    assert len(normal.commands) == scenario.commands, normal.commands

    runs = [Run(step, way, *numbers.next())
            for step in range(-1, len(normal.commands) + 1) for way in ("sighup", "line", "eof")]
    runs.append(Run(-1, "sighup-ready", *numbers.next()))
    for run in runs:
        prepare(setup, scenario, run.key)

    def spawn(run):
        if run.way == "sighup-ready":
            peer = ReadyPeer(scenario.asterisk(), hangup=(run.step, "sighup"))
            run.call = peer.run_script(scenario.script, scenario.args(run.number),
                                       callerid=scenario.callerid(run.number), process_env=setup.env, timeout=15)
        else:
            run.call = setup.run(scenario.script, scenario.args(run.number), asterisk=scenario.asterisk(),
                                 hangup=(run.step, run.way), callerid=scenario.callerid(run.number), timeout=15)
        return run

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(spawn, runs))
    tables = rows_by_key(setup)
    problems = []
    for run in runs:
        found = check_run_and_rows(run, scenario, normal, tables, "spawn")
        if found:
            problems.append("step %d %s: %s" % (run.step, run.way, "; ".join(found)))
    report(problems, len(runs))


# -- FastAGI ----------------------------------------------------------------------------------------
def test_hangup_every_step_fastagi(setup):
    """The matrix for the ways a FastAGI connection ends (a HANGUP line, EOF), every scenario,
    sequentially through one server; then it must still answer normal calls and stop at once
    (no handler thread left waiting on a dead connection)."""
    numbers = Numbers()

    def call(scenario, number, hangup=None):
        return server.call(scenario.script, scenario.args(number), asterisk=scenario.asterisk(), hangup=hangup,
                           callerid=scenario.callerid(number), timeout=15)

    problems = []
    total = 0
    with FastAGIServer(setup.config, pool_size=4) as server:
        normals, planned = {}, []
        for scenario in SCENARIOS:
            number, key = numbers.next()
            prepare(setup, scenario, key)
            normal = call(scenario, number)
            assert normal.variables == scenario.variables, (scenario.name, normal.commands)
            assert len(normal.commands) == scenario.commands, (scenario.name, normal.commands)
            normals[scenario.name] = normal
            for step in range(-1, len(normal.commands) + 1):
                for way in ("line", "eof"):
                    run = Run(step, way, *numbers.next())
                    prepare(setup, scenario, run.key)
                    planned.append((scenario, run))
        for scenario, run in planned:
            run.call = call(scenario, run.number, hangup=(run.step, run.way))
        # Still serving: every scenario once more, normally.
        for scenario in SCENARIOS:
            number, key = numbers.next()
            prepare(setup, scenario, key)
            again = call(scenario, number)
            if again.variables != scenario.variables or again.commands != normals[scenario.name].commands:
                problems.append("%s after the hangups: %s" % (scenario.name, again.commands))
        tables = rows_by_key(setup)
        for scenario, run in planned:
            total += 1
            found = check_run_and_rows(run, scenario, normals[scenario.name], tables, "fastagi")
            if found:
                problems.append("%s step %d %s: %s" % (scenario.name, run.step, run.way, "; ".join(found)))
    # leaving the block closed the server: within 15 s, or the test failed there
    assert server.closed < 10, "server_close waited for a hung-up call"
    assert server.errors == [], server.errors[0]
    for line in server.log:
        assert "\n" not in line and "\r" not in line, line
    report(problems, total)
