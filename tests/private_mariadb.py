"""A private, throwaway MariaDB server for tests that stop, kill or restart it.

The shared server (VIPSTICKY_TEST_MYSQL) is used by other test runs at the same
time and must never be stopped. This one lives in a temporary folder, listens on a
free loopback port and belongs to the test that started it:

    server = PrivateMariaDB(tmp_dir)
    server.install()        # mariadb-install-db, about 2 s
    server.start()          # returns the seconds until it answered
    server.stop()           # SIGTERM, wait (a clean shutdown)
    server.kill()           # SIGKILL, wait (a crash: InnoDB recovers on the next start)
    server.url("dbname")    # mysql://root@127.0.0.1:PORT/dbname

root@127.0.0.1 has an empty password ("normal" authentication, no unix_socket plugin).
"""
import os
import shutil
import signal
import socket
import subprocess
import time

import pymysql

from agi_scripts.config import parse_database_url
from agi_scripts.dialects import MySQL

INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
SERVER = next((path for path in ("/usr/sbin/mariadbd", "/usr/sbin/mysqld") if os.access(path, os.X_OK)),
              shutil.which("mariadbd"))


def available() -> bool:
    return bool(INSTALL_DB and SERVER)


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


class PrivateMariaDB:
    def __init__(self, base_dir, port=None):
        self.base_dir = str(base_dir)
        self.datadir = os.path.join(self.base_dir, "data")
        self.socket = os.path.join(self.base_dir, "mariadb.sock")
        self.pid_file = os.path.join(self.base_dir, "mariadb.pid")
        self.error_log = os.path.join(self.base_dir, "error.log")
        self.port = port or free_port()
        self.process = None
        self.starts = []  # seconds each start took until the server answered

    # -- lifecycle ------------------------------------------------------------------
    def install(self) -> float:
        started = time.monotonic()
        os.makedirs(self.base_dir, exist_ok=True)
        result = subprocess.run(
            [INSTALL_DB, "--no-defaults", "--auth-root-authentication-method=normal",
             "--datadir=%s" % self.datadir, "--user=%s" % _user(), "--skip-test-db"],
            capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError("mariadb-install-db failed (%d): %s" % (result.returncode,
                                                                       (result.stderr or result.stdout)[-2000:]))
        return time.monotonic() - started

    def start(self, timeout: float = 60.0) -> float:
        """Start on the same datadir and port; the seconds until a query answered."""
        assert self.process is None or self.process.poll() is not None, "already running"
        started = time.monotonic()
        self.process = subprocess.Popen(
            [SERVER, "--no-defaults", "--datadir=%s" % self.datadir, "--port=%d" % self.port,
             "--bind-address=127.0.0.1", "--socket=%s" % self.socket, "--pid-file=%s" % self.pid_file,
             "--user=%s" % _user(), "--innodb-buffer-pool-size=32M", "--skip-log-bin", "--skip-name-resolve",
             "--max-connections=500", "--log-error=%s" % self.error_log],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("mariadbd exited with %s during start: %s" % (self.process.returncode,
                                                                                self.log_tail()))
            try:
                self.connect(connect_timeout=1).close()
                break
            except pymysql.err.Error:
                if time.monotonic() - started > timeout:
                    self.kill()
                    raise RuntimeError("mariadbd did not answer within %s s: %s" % (timeout, self.log_tail()))
                time.sleep(0.02)
        elapsed = time.monotonic() - started
        self.starts.append(elapsed)
        return elapsed

    def stop(self, timeout: float = 60.0) -> float:
        """SIGTERM and wait: a clean shutdown. Returns the seconds it took."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> float:
        """SIGKILL and wait: what a crash or an OOM kill looks like."""
        return self._signal(signal.SIGKILL, 30.0)

    def _signal(self, signum, timeout) -> float:
        started = time.monotonic()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return time.monotonic() - started

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- use --------------------------------------------------------------------------
    def connect(self, database=None, **options):
        """root's connection (to database, or to none); options override pymysql.connect()'s
        keyword arguments. The package's connect parameters, without its per-call read and
        write timeouts."""
        params = MySQL.connect_params(parse_database_url(self.url("mysql")), database=database, connect_timeout=5,
                                      read_timeout=None, write_timeout=None)
        params.update(options)
        return pymysql.connect(**params)

    def execute(self, *statements, database=None):
        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                return cursor.fetchall()
        finally:
            connection.close()

    def url(self, database: str, user: str = "root", password: str = "") -> str:
        credentials = user if not password else "%s:%s" % (user, password)
        return "mysql://%s@127.0.0.1:%d/%s" % (credentials, self.port, database)

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.error_log, errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no error log)"


def _user() -> str:
    """mariadbd refuses to run as root unless told --user=root; as another user it
    runs as that user."""
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name
