"""The doctor's proof that a call works: every installed script run once as Asterisk's user, against the real database.

Each script is spawned as Asterisk's res_agi spawns it (the agi-bin path, argv, the AGI
conversation, spoken by the Asterisk stand-in) as the user Asterisk runs as, with a
reserved test number that no real caller has. The binding it makes is deleted again by
delnum, and a direct read checks that nothing is left. The first thing that would stop a
real call is reported in one line with its fix.
"""
from __future__ import annotations

import os
import re
import sys
import time

from .asterisk_standin import Asterisk, Peer
from .config import Config
from .database import AB_KEYS, BINDINGS, Database, DatabaseError
from .install import InstallError, blocked_folder, can_access, installed_script, user_ids
from .number_keys import number_key
from .records import record
from .rules import agent_allowed
from .sticky_route import talk_note

# Run by the doctor's own interpreter, as root: take the user's groups and ids (from root to
# another user the kernel drops every capability, as when Asterisk gives up root at start-up),
# then exec the script as res_agi does. Not setpriv: it keeps capabilities through the exec
# itself, so a script behind a folder the user cannot enter would still start. "-": keep the
# ids (the doctor already runs as that user). Exit 126/127 like a shell when exec fails.
SWITCH_USER = """\
import os, sys
if sys.argv[1] != "-":
    os.setgroups([int(g) for g in sys.argv[3].split(",") if g])
    os.setresgid(int(sys.argv[2]), int(sys.argv[2]), int(sys.argv[2]))
    os.setresuid(int(sys.argv[1]), int(sys.argv[1]), int(sys.argv[1]))
try:
    os.execv(sys.argv[4], sys.argv[4:])
except OSError as error:
    sys.stderr.write("Failed to execute '%s': %s\\n" % (sys.argv[4], error.strerror))
    sys.exit(126 if error.errno == 13 else 127)
"""
# Asterisk started by systemd or an init script has little more than this.
SCRIPT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SCRIPT_TIMEOUT = 60  # seconds per script: far beyond a call's budget, for a busy host
AGENT_NAME = "vipsticky_doctor"  # stands for the * of a [sticky] agents pattern
GRANTS = "SELECT, INSERT, UPDATE, DELETE"  # what the scripts do with the tables

Step = record("Step", "script args variable expected")


def reserved_number(plan) -> str:
    """The test number: + the plan's country code and a national number of zeros (8 to 15
    digits in all). No numbering plan gives anyone a national number of all zeros, so it is
    never a real caller; yet it makes a key like every international number (+ and 8 to 15
    digits), so each script goes all the way to the database with it."""
    return "+" + (plan.country_code + "0" * plan.national_length).ljust(8, "0")[:15]


def reserved_key(plan) -> str:
    """The test number's key (what its bindings and events are stored under)."""
    return number_key(reserved_number(plan), plan)


class CallPathProof:
    """run() -> (True, what was proven) or (False, the first thing that stops a call and its fix)."""

    def __init__(self, config: Config, config_path: str, user: str, agi_dir: str, queue: str = ""):
        self.config, self.config_path, self.user, self.agi_dir = config, config_path, user, agi_dir
        self.queue = queue  # the dialplan's queue when known: its [queue NAME] settings apply
        self.number = reserved_number(config.numbers)
        self.key = reserved_key(config.numbers)

    def run(self) -> tuple[bool, str]:
        command = self._as_user()
        if isinstance(command, str):
            return False, command
        patterns = self.config.sticky.for_queue(self.queue).agents
        agent = next((agent for agent in (pattern.replace("*", AGENT_NAME) for pattern in patterns)
                      if agent_allowed(agent, patterns)), None)
        if agent is None:
            return False, "no [sticky] agents pattern admits an agent: every binding would be refused"
        # What the stand-in answers: Queue()'s MEMBERINTERFACE (setinterfacevar=yes), an idle
        # agent, a member of the queue, the unbind sound.
        asterisk = Asterisk(variables={"MEMBERINTERFACE": agent}, devices={agent: "NOT_INUSE"},
                            queues={self.queue: {agent: False}} if self.queue else {},
                            sounds={self.config.sticky.unbind_sound or "beep"})
        number, scope = self.number, [self.queue] if self.queue else []
        min_talk = self.config.sticky.for_queue(self.queue).min_talk
        # With min_talk the binding is made by the hangup handler, after a conversation
        # that began min_talk seconds ago.
        answered = [Step("sticky_route", ["remember", number] + scope, "STICKY_STATUS", "pending"),
                    Step("sticky_route", ["hangup", self.key, self.queue], "STICKY_STATUS", "stored")] \
            if min_talk else [Step("sticky_route", ["remember", number] + scope, "STICKY_STATUS", "stored")]
        steps = [Step("vip_or_not", [number], "QUEUE_PRIO", None),
                 Step("sticky_route", ["lookup", number] + scope, "STICKY_STATUS", "none")] + answered + [
                 Step("sticky_route", ["lookup", number] + scope, "STICKY_STATUS", "found"),
                 Step("delnum", [number], "DELNUM_STATUS", "deleted")]
        environment = {"PATH": SCRIPT_PATH, "VIPSTICKY_CONFIG": os.path.abspath(self.config_path),
                       "AST_AGI_DIR": self.agi_dir}
        try:
            self._remove_test_bindings()  # an interrupted doctor may have left one
        except DatabaseError as error:
            return False, "the database as the doctor sees it: %s" % error
        problem, ran_from = None, set()
        try:
            for step in steps:
                path = self._script(step.script)
                ran_from.add(os.path.dirname(path))
                if step.args[0] == "hangup":
                    asterisk.variables["STICKY_TALK"] = talk_note(time.time() - min_talk, agent)
                call = Peer(asterisk).run_script(step.script, step.args, callerid=number, process_env=environment,
                                                 timeout=SCRIPT_TIMEOUT + self.config.database.connect_timeout,
                                                 command=command + [path])
                problem = self._problem(step, path, call)
                if problem:
                    break
        except InstallError as error:
            problem = str(error)
        finally:
            try:
                left = self._remove_test_bindings()
            except DatabaseError as error:
                problem = problem or "cannot check that the test binding is gone: %s" % error
        if problem:
            return False, problem
        if left:
            return False, ("delnum left %d binding(s) of the test number %s behind (removed now): a caller's * "
                           "would not unbind" % (left, number))
        where = ", ".join(sorted(ran_from))
        if ran_from != {os.path.normpath(self.agi_dir)}:
            where += " (not all from %s: see its links above)" % self.agi_dir
        actions = "/".join(step.args[0] for step in steps if step.script == "sticky_route")
        return True, ("a call works as %s: vip_or_not, sticky_route %s and delnum ran from %s "
                      "against %s with the test number %s; nothing left behind"
                      % (self.user, actions, where, self.config.database.safe_url, number))

    # -- how the scripts are run ------------------------------------------------------------
    def _as_user(self):
        """The command prefix that runs a script as the user, or why there is none."""
        uid, gid, gids = user_ids(self.user)
        prefix = [sys.executable, "-I", "-S", "-c", SWITCH_USER]
        if os.geteuid() == 0:
            return prefix + [str(uid), str(gid), ",".join(str(g) for g in sorted(gids))]
        if os.geteuid() == uid:
            return prefix + ["-", "-", ""]
        return ("call path not proven: only root can run the scripts as %s (run vipsticky doctor as root, "
                "or as %s)" % (self.user, self.user))

    def _script(self, name: str) -> str:
        """What AGI(name) runs: astagidir/name; the installed script when that is missing
        (the link problem is reported on its own; the rest of the path is still proven)."""
        link = os.path.join(os.path.normpath(self.agi_dir), name)
        return link if os.path.lexists(link) else installed_script(name)

    def _remove_test_bindings(self) -> int:
        """How many bindings of the test number the table holds, read straight from it; any
        there are deleted. (Only then a write: on SQLite the doctor runs as root.)"""
        database = Database(self.config.database, breaker=False)
        try:
            found = database.run("SELECT COUNT(*) FROM %s WHERE number = %%s" % BINDINGS, (self.key,), fetch="one")
            return database.forget(self.key, None) if found[0] else 0
        finally:
            database.close()

    # -- what went wrong ------------------------------------------------------------------------
    def _problem(self, step: Step, path: str, call) -> str | None:
        shown = "AGI(%s) as %s" % (",".join([step.script] + step.args), self.user)
        if call.timed_out:
            return "%s did not finish within %d s" % (shown, SCRIPT_TIMEOUT)
        if call.exit_code != 0:
            said = [line for line in call.stderr.splitlines() if line.strip()]
            return self._unreachable(path) or "%s exits %s: %s" % (shown, call.exit_code,
                                                                   said[-1] if said else "nothing on stderr")
        said = call.warnings + call.verbose
        reason = next((line for line in said if line.endswith("; failing open")), None) or next(iter(said), None)
        if reason:
            reason = re.sub(r"^vipsticky %s: |; failing open$" % step.script, "", reason)
            return "%s fails open: %s%s" % (shown, reason, self._fix(reason))
        if call.stderr.strip():
            return "%s writes to stderr (Asterisk logs it): %s" % (shown, call.stderr.strip().splitlines()[-1])
        value = call.variables.get(step.variable)
        if value is None or (step.expected and value != step.expected):
            return "%s sets %s=%s where a working call sets %s" % (shown, step.variable, value,
                                                                     step.expected or "it")
        return None

    def _unreachable(self, path: str) -> str | None:
        """Why the user cannot start the script: a folder on the way to it or to its
        interpreter (#! line) it cannot enter, or a file it may not run."""
        targets = [(path, os.R_OK | os.X_OK, "")]
        interpreter = shebang(path)
        if interpreter:
            targets.append((interpreter, os.X_OK, ", the interpreter of %s" % path))
        for target, want, what in targets:
            problem = self._blocked(target, what, "AGI() gets Permission denied (exit 126)")
            if problem:
                return problem
            if not can_access(target, self.user, want):
                return "%s may not run %s%s: AGI() gets Permission denied (exit 126); chmod o+rx %s" % (
                    self.user, target, what, os.path.realpath(target))
        return None

    def _blocked(self, target: str, what: str, effect: str) -> str | None:
        folder = blocked_folder(target, self.user)
        if folder is None:
            return None
        return ("%s cannot enter folder %s on the way to %s%s: %s; chmod o+x %s, or move it where %s can reach"
                % (self.user, folder, target, what, effect, folder, self.user))

    def _fix(self, reason: str) -> str:
        """The fix for a fail-open reason, as ': what to do', or '' when the reason says it all."""
        code = re.search(r"\(MySQL error (\d+)\)", reason)
        code = int(code.group(1)) if code else None
        if code in (1146, 1305):  # a table, or a routine, is missing
            addressbook = code == 1305 or AB_KEYS in reason
            return "; run vipsticky install-schema%s" % (" --addressbook" if addressbook else "")
        if code in (1044, 1142, 1143, 1370):  # the account lacks a privilege
            account = re.search(r"'[^']*'@'[^']*'", reason)
            return "; GRANT %s ON `%s`.* TO %s" % (GRANTS, self.config.database.database,
                                                   account.group(0) if account else "the [database] url's user")
        if code == 1045:
            return "; the server refuses the user or password of [database] url"
        if "readonly database" in reason:  # SQLite: the file, or its folder for the journal
            return "; %s must be able to write %s and its folder: chown %s both" % (
                self.user, self.config.database.path, self.user)
        for target in (self.config_path, self.config.database.path):
            if target and target in reason:
                return "; " + (self._blocked(target, "", "it cannot be opened") or
                               "%s must be able to %s %s" % (self.user, "read" if target == self.config_path
                                                             else "write", target))
        return ""


def shebang(path: str) -> str | None:
    """The interpreter a script's #! line names, or None."""
    try:
        with open(os.path.realpath(path), "rb") as handle:
            first = handle.readline(400)
    except OSError:
        return None
    words = first[2:].decode("utf-8", "replace").split() if first.startswith(b"#!") else []
    return words[0] if words else None
