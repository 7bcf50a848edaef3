"""The processes a benchmark starts: the scripts' environment, the floor script, `vipsticky serve`."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import agi_scripts
from agi_scripts.asterisk_standin import script_command


class ChildEnvironments:
    """Environments for spawned scripts. They run with a bytecode cache, as on an Asterisk box
    (pip writes .pyc at install; PYTHONDONTWRITEBYTECODE, set in some dev shells, would make
    every call compile the project's modules from source). The cache lives in `tmp`: the
    source tree is not written to. The uncached case is measured separately in section a."""

    def __init__(self, tmp):
        cached = dict(os.environ)
        cached.pop("VIPSTICKY_CONFIG", None)
        self.uncached = dict(cached, PYTHONDONTWRITEBYTECODE="1")
        self.uncached.pop("PYTHONPYCACHEPREFIX", None)
        cached.pop("PYTHONDONTWRITEBYTECODE", None)
        cached["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
        self.cached = cached
        self.installed = os.access(os.path.join(os.path.dirname(sys.executable), "vip_or_not"), os.X_OK)
        if not self.installed:  # Peer falls back to python -m agi_scripts.X: make this package importable
            source = os.path.dirname(os.path.dirname(os.path.abspath(agi_scripts.__file__)))
            for env in (self.cached, self.uncached):
                env["PYTHONPATH"] = source + os.pathsep + env.get("PYTHONPATH", "")

    def env(self, config_path, bytecode_cache=True):
        return dict(self.cached if bytecode_cache else self.uncached, VIPSTICKY_CONFIG=config_path)


def write_floor(directory, name, modules, exit_at_once=False):
    """A tiny script file that only imports `modules`, started exactly like the console
    scripts (same shebang); exit_at_once: it then ends as the scripts do, with os._exit()
    (no interpreter teardown)."""
    shebang = "#!%s" % sys.executable
    try:
        with open(script_command("vip_or_not")[0]) as handle:
            first = handle.readline().strip()
            if first.startswith("#!"):
                shebang = first
    except (OSError, UnicodeDecodeError):
        pass
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        handle.write("%s\nimport %s\n" % (shebang, ", ".join(modules)))
        if exit_at_once:
            handle.write("import os\nos._exit(0)\n")
    os.chmod(path, 0o755)
    return [path]


def proc_cpu(pid):
    """user + system CPU seconds of a process (all its threads)."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid):
    """The pids of a process's children (serve --workers: the worker processes)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


class Server:
    """`vipsticky serve` in its own process, on a port the kernel picks; workers: its
    --workers (1: one process, as the README's FastAGI figures; more: a supervisor and
    that many worker processes)."""

    def __init__(self, env, workers=1):
        command = script_command("vipsticky")
        if not os.access(command[0], os.X_OK) or command[0] == sys.executable:
            command = [sys.executable, "-m", "agi_scripts.cli"]
        self.process = subprocess.Popen(command + ["serve", "--listen", "127.0.0.1:0", "--pool", "8",
                                                   "--workers", str(workers)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        env=env, text=True)
        self.log = []
        self.address = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.log.append(line.rstrip())
            match = re.search(r"listening on ([\d.]+):(\d+)", line)
            if match:
                self.address = (match.group(1), int(match.group(2)))
                break
        if self.address is None:
            self.process.kill()
            raise RuntimeError("vipsticky serve did not start: %s" % " | ".join(self.log))
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        for line in self.process.stderr:
            self.log.append(line.rstrip())

    def cpu(self):
        """CPU seconds of the server, its worker processes included."""
        return sum(proc_cpu(pid) for pid in [self.process.pid] + children(self.process.pid))

    def stop(self):
        """SIGTERM, as systemd stops it; returns (exit code, seconds to stop)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.reader.join(timeout=5)
        return code, time.monotonic() - started
