"""This host's Asterisk as install-agi and the doctor see it: its config files, and what a running one answers.

asterisk.conf gives astagidir (where AGI() finds the scripts), astetcdir and runuser;
`asterisk -rx` asks a running Asterisk for its settings, dialplan, queues and features.
Only reading: nothing here changes Asterisk.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

from .install import InstallError
from .records import record

DEFAULT_ASTERISK_CONF = "/etc/asterisk/asterisk.conf"
# Asterisk's built-in directories, used when asterisk.conf does not name them.
DEFAULT_AGI_DIR = "/var/lib/asterisk/agi-bin"
DEFAULT_ETC_DIR = "/etc/asterisk"
# The shipped dialplan examples: the inbound flow, Dial()'s U() target, the * key's target.
INBOUND_CONTEXT = "vipsticky-inbound"
HELPER_CONTEXTS = ("vipsticky-refresh", "vipsticky-unbind")
UNBIND_FEATURE = "vipsticky_unbind"  # features.conf.example's [applicationmap] entry
RX_TIMEOUT = 15  # seconds for one `asterisk -rx`
INCLUDE_DEPTH = 10
TRUE_VALUES = ("yes", "true", "y", "t", "1", "on")  # Asterisk's ast_true()
# In `dialplan show`: the queue of Queue(NAME,...) and the QUEUE argument of sticky_route.
QUEUE_IN_DIALPLAN = re.compile(r"\bQueue\(\s*([^,)\s]+)|\bsticky_route,(?:lookup|remember),[^,\"]*,([^,)\"\s]+)")

AsteriskConf = record("AsteriskConf", "path found agi_dir etc_dir run_user")


def read_asterisk_conf(path: str | None = None) -> AsteriskConf:
    """asterisk.conf's astagidir, astetcdir and runuser. path None means the default file,
    which may be missing (Asterisk's built-in directories then); a path given must exist."""
    if path is not None and not os.path.isfile(path):
        raise InstallError("%s does not exist: pass the asterisk.conf Asterisk reads (--asterisk-conf)" % path)
    path = path or DEFAULT_ASTERISK_CONF
    if not os.path.isfile(path):
        return AsteriskConf(path, False, DEFAULT_AGI_DIR, DEFAULT_ETC_DIR, None)
    sections, _ = read_config(path)
    directories, options = sections.get("directories", {}), sections.get("options", {})
    return AsteriskConf(path, True, directories.get("astagidir") or DEFAULT_AGI_DIR,
                        directories.get("astetcdir") or DEFAULT_ETC_DIR, options.get("runuser") or None)


def read_config(path: str) -> tuple[dict[str, dict[str, str]], set[str]]:
    """(sections, template names) of an Asterisk config file, read as Asterisk reads it:
    [name], [name](!) templates, [name](tmpl,...) inheriting their keys, [name](+) adding to
    an earlier section; key = value and key => value; ; comments (\\; is a ;) and ;-- --;
    blocks; #include and #tryinclude (globs, relative to the file's folder) followed. Keys
    are lower case; a repeated key keeps its last value. A missing file reads as empty."""
    sections: dict[str, dict[str, str]] = {}
    templates: set[str] = set()
    _read_into(path, os.path.dirname(os.path.abspath(path)), sections, templates, [None], 0)
    return sections, templates


def _read_into(path, folder, sections, templates, current, depth):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return
    text = re.sub(r";--.*?--;", "", text, flags=re.S)
    for raw in text.splitlines():
        line = re.split(r"(?<!\\);", raw, maxsplit=1)[0].replace("\\;", ";").strip()
        included = re.match(r"#\s*(?:try)?include\s+[\"<]?([^\">]+)[\">]?$", line)
        if included and depth < INCLUDE_DEPTH:
            pattern = included.group(1).strip()
            for name in sorted(glob.glob(os.path.join(folder, pattern))):
                _read_into(name, folder, sections, templates, current, depth + 1)
            continue
        header = re.match(r"^\[([^\]]+)\]\s*(?:\((.*)\))?$", line)
        if header:
            name, options = header.group(1).strip(), [o.strip() for o in (header.group(2) or "").split(",")]
            if "+" not in options or name not in sections:
                sections[name] = {}
            for option in options:
                if option == "!":
                    templates.add(name)
                elif option not in ("", "+") and option in sections:
                    sections[name].update(sections[option])
            current[0] = name
            continue
        key, sep, value = line.partition("=")
        if sep and current[0] is not None and not line.startswith("#"):
            sections[current[0]][key.strip().lower()] = value[1:].strip() if value.startswith(">") else value.strip()


def is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in TRUE_VALUES


class RunningAsterisk:
    """`asterisk [-C asterisk.conf] -rx COMMAND` against the Asterisk running on this host.
    rx() is None when none answers; why_not then says why."""

    def __init__(self, binary: str | None = None, asterisk_conf: str | None = None):
        self.binary = binary or shutil.which("asterisk") or next(
            (path for path in ("/usr/sbin/asterisk", "/usr/local/sbin/asterisk") if os.access(path, os.X_OK)), None)
        self.asterisk_conf = asterisk_conf
        self.why_not = None if self.binary else "no asterisk binary on PATH (--asterisk PATH names one)"

    def rx(self, command: str) -> str | None:
        if not self.binary:
            return None
        argv = [self.binary] + (["-C", self.asterisk_conf] if self.asterisk_conf else []) + ["-rx", command]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=RX_TIMEOUT,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as error:
            self.why_not = "%s -rx: %s" % (self.binary, getattr(error, "strerror", None) or error)
            return None
        if done.returncode != 0:
            said = [line for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
            self.why_not = said[-1].strip() if said else "%s -rx exits %d" % (self.binary, done.returncode)
            return None
        return done.stdout

    def settings(self) -> dict[str, str] | None:
        """`core show settings` as {label: value}: Version, AGI Scripts directory,
        Configuration directory, User name and group, ..."""
        text = self.rx("core show settings")
        return None if text is None else settings_of(text)

    def evaluate(self, expression: str) -> str | None:
        """A dialplan function's value (`dialplan eval function`), None when it cannot tell."""
        text = self.rx("dialplan eval function %s" % expression)
        found = re.search(r"^Result: ?(.*)$", text or "", re.M)
        return found.group(1) if found and "Failure" not in text else None

    def context(self, name: str) -> str | None:
        """`dialplan show NAME`, or None when the dialplan has no such context."""
        text = self.rx("dialplan show %s" % name)
        return None if text is None or "There is no existence of" in text else text

    def queue_exists(self, name: str) -> bool | None:
        """Whether `queue show NAME` knows the queue (None: Asterisk did not answer)."""
        text = self.rx("queue show %s" % name)
        return None if text is None else not text.startswith("No such queue")

    def module_running(self, module: str) -> bool | None:
        text = self.rx("module show like %s" % module)
        return None if text is None else bool(re.search(r"^%s\.so\s.*\bRunning\b" % re.escape(module), text, re.M))

    def feature_defined(self, name: str) -> bool | None:
        """`features show` lists the [applicationmap] entry (it does not check its application)."""
        text = self.rx("features show")
        return None if text is None else any(line.split()[:1] == [name] for line in text.splitlines())


def settings_of(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if sep and label.startswith("  ") and label.strip():
            found.setdefault(label.strip(), value.strip())
    return found


def dialplan_queues(text: str) -> list[str]:
    """The queues a `dialplan show` names, in order: Queue(NAME,...) and the QUEUE argument
    of AGI(sticky_route,lookup|remember,NUMBER,QUEUE). A name chosen at run time (${...})
    cannot be checked and is left out."""
    names = []
    for match in QUEUE_IN_DIALPLAN.finditer(text):
        name = match.group(1) or match.group(2)
        if "$" not in name and name not in names:
            names.append(name)
    return names
