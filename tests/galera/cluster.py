"""A throwaway 3-node MariaDB Galera cluster on loopback, as ../shared/GALERA.md sets one up.

    cluster = GaleraCluster()      # a folder of its own under /tmp (mysqld runs as user mysql)
    cluster.start()                # install-db on node1, bootstrap it, join node2 then node3
    cluster.kill(3)                # SIGKILL: what a crash looks like
    cluster.rejoin(3)              # --wsrep-recover, then a start at that position (IST)
    cluster.url("vs", first=2)     # mysql://root@127.0.0.1:P2,127.0.0.1:P3,127.0.0.1:P1/vs
    cluster.destroy()              # SIGKILL every node, remove the folder

Per node (GALERA.md section 2): SQL, gcomm, IST and SST ports, user=mysql (rsync SST needs
it when started as root), wsrep_sst_method=rsync. root@127.0.0.1 has an empty password
(install-db --auth-root-authentication-method=normal), replicated to node2/3 by the SST.
The ports are free ones picked at start, so two runs on one machine do not collide.
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pymysql

import private_mariadb

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
SERVER = private_mariadb.SERVER
INSTALL_DB = private_mariadb.INSTALL_DB
NODES = (1, 2, 3)
# GALERA.md 5c: set at runtime once a node is Synced (in my.cnf they made a start flap).
# They shorten the stall of the survivors' writes when a node dies from 6.2-6.5 s to 3.3-3.5 s.
EVS_OPTIONS = "evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT2S;evs.inactive_timeout=PT4S"

MY_CNF = """[client]
socket   = {base}/node{n}/mysqld.sock
port     = {sql}

[mysqld]
user          = mysql
datadir       = {base}/node{n}/data
socket        = {base}/node{n}/mysqld.sock
pid-file      = {base}/node{n}/mysqld.pid
log-error     = {base}/node{n}/error.log
port          = {sql}
bind-address  = 127.0.0.1
skip-name-resolve
max_connections          = 400
binlog_format            = ROW
default_storage_engine   = InnoDB
innodb_autoinc_lock_mode = 2
innodb_buffer_pool_size  = 64M
innodb_log_file_size     = 8M
wsrep_on                 = ON
wsrep_provider           = {provider}
wsrep_cluster_name       = pytest_galera
wsrep_cluster_address    = gcomm://{gcomm}
wsrep_node_name          = node{n}
wsrep_node_address       = 127.0.0.1:{group}
wsrep_provider_options   = "base_host=127.0.0.1;base_port={group};gmcast.listen_addr=tcp://127.0.0.1:{group};ist.recv_addr=127.0.0.1:{ist};gcache.size=32M"
wsrep_sst_receive_address = 127.0.0.1:{sst}
wsrep_sst_method         = rsync
"""


class Unavailable(Exception):
    """The cluster cannot be started on this machine (the reason is for a human)."""


def missing() -> str:
    """Why a cluster cannot start here, or ''."""
    if os.geteuid() != 0:
        return "the Galera tests start mariadbd as user mysql: run them as root"
    if not (SERVER and INSTALL_DB):
        return "mariadbd and mariadb-install-db are needed (apt-get install mariadb-server)"
    if not os.path.exists(PROVIDER):
        return "%s is missing (apt-get install galera-4)" % PROVIDER
    for tool in ("rsync", "ss"):
        if not shutil.which(tool):
            return "%s is needed for the rsync SST (apt-get install %s)" % (tool, tool)
    try:
        import pwd
        pwd.getpwnam("mysql")
    except KeyError:
        return "no system user mysql (the mariadb-server package makes it)"
    return ""


def _free_ports(count):
    ports = set()
    while len(ports) < count:
        ports.add(private_mariadb.free_port())
    return sorted(ports)


class Node:
    def __init__(self, cluster, n, ports):
        self.cluster, self.n = cluster, n
        self.sql, self.group, self.ist, self.sst = ports
        self.folder = os.path.join(cluster.base, "node%d" % n)
        self.cnf = os.path.join(self.folder, "my.cnf")
        self.error_log = os.path.join(self.folder, "error.log")
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def connect(self, database=None, **options):
        params = dict(host="127.0.0.1", port=self.sql, user="root", password="", database=database,
                      connect_timeout=5, autocommit=True, charset="utf8mb4", ssl_disabled=True)
        params.update(options)
        return pymysql.connect(**params)

    def query(self, sql, params=None, database=None):
        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        finally:
            connection.close()

    def status(self) -> dict:
        """wsrep_* status variables (they answer on a non-Primary node too)."""
        return dict(self.query("SHOW GLOBAL STATUS LIKE 'wsrep%'"))

    def log_tail(self, lines=15) -> str:
        try:
            with open(self.error_log, errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no error log)"


class GaleraCluster:
    def __init__(self, base=None):
        self.base = base or tempfile.mkdtemp(prefix="vipsticky-galera-")
        ports = _free_ports(12)
        self.nodes = {n: Node(self, n, ports[(n - 1) * 4:n * 4]) for n in NODES}
        self.timings = {}  # what each step took, for the report

    # -- lifecycle ----------------------------------------------------------------------
    def write_configs(self):
        gcomm = ",".join("127.0.0.1:%d" % node.group for node in self.nodes.values())
        for node in self.nodes.values():
            os.makedirs(os.path.join(node.folder, "data"), exist_ok=True)
            with open(node.cnf, "w") as handle:
                handle.write(MY_CNF.format(base=self.base, n=node.n, sql=node.sql, gcomm=gcomm, group=node.group,
                                           ist=node.ist, sst=node.sst, provider=PROVIDER))
        subprocess.run(["chown", "-R", "mysql:mysql", self.base], check=True)

    def start(self):
        """Install node1, bootstrap it, then join node2 and node3 one at a time (each
        until Synced); returns the seconds it took."""
        why = missing()
        if why:
            raise Unavailable(why)
        started = time.monotonic()
        self.write_configs()
        result = subprocess.run([INSTALL_DB, "--defaults-file=%s" % self.nodes[1].cnf, "--skip-test-db",
                                 "--auth-root-authentication-method=normal"], capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            raise Unavailable("mariadb-install-db failed: %s" % (result.stderr or result.stdout)[-1500:])
        self.timings["install_s"] = time.monotonic() - started
        self.launch(1, "--wsrep-new-cluster")
        self.wait_synced(1, size=1)
        for n in (2, 3):
            self.launch(n)
            self.wait_synced(n, size=n)
        for n in NODES:
            self.set_evs(n)
        self.timings["start_s"] = time.monotonic() - started
        return self.timings["start_s"]

    def launch(self, n, *options):
        node = self.nodes[n]
        assert not node.running, "node%d already runs" % n
        log = open(os.path.join(node.folder, "stdout.log"), "ab")
        node.process = subprocess.Popen([SERVER, "--defaults-file=%s" % node.cnf] + list(options),
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()

    def wait_synced(self, n, size=None, timeout=90.0) -> float:
        """Until node n is Primary, Synced and ready (and the cluster has `size` nodes)."""
        node = self.nodes[n]
        started = time.monotonic()
        last = None
        while True:
            if node.process is not None and node.process.poll() is not None:
                raise Unavailable("node%d exited (%s) before it was Synced:\n%s"
                                  % (n, node.process.returncode, node.log_tail()))
            try:
                status = node.status()
                last = (status.get("wsrep_cluster_size"), status.get("wsrep_cluster_status"),
                        status.get("wsrep_local_state_comment"), status.get("wsrep_ready"))
                if last[1:] == ("Primary", "Synced", "ON") and (size is None or int(last[0]) == size):
                    return time.monotonic() - started
            except pymysql.err.Error:
                pass
            if time.monotonic() - started > timeout:
                raise Unavailable("node%d not Synced within %d s (last status %r):\n%s"
                                  % (n, timeout, last, node.log_tail()))
            time.sleep(0.1)

    def set_evs(self, n):
        self.nodes[n].query("SET GLOBAL wsrep_provider_options = %s", (EVS_OPTIONS,))

    def kill(self, n) -> None:
        """SIGKILL node n and reap it (its pid file and socket stay behind, as after a crash)."""
        node = self.nodes[n]
        if node.running:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(30)

    def recovered_position(self, n) -> str:
        """uuid:seqno of node n's data after a crash (mariadbd --wsrep-recover, 0.2 s)."""
        node = self.nodes[n]
        log = os.path.join(node.folder, "recover.log")
        subprocess.run([SERVER, "--defaults-file=%s" % node.cnf, "--wsrep-recover", "--log-error=%s" % log],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        with open(log, errors="replace") as handle:
            found = re.findall(r"WSREP: Recovered position: (\S+:-?\d+)", handle.read())
        os.unlink(log)
        if not found:
            raise Unavailable("node%d: --wsrep-recover found no position" % n)
        return found[-1]

    def rejoin(self, n, size=None) -> float:
        """Restart a killed node at its recovered position, so that it catches up by IST
        (a plain start would do a full SST); returns the seconds until it is Synced."""
        started = time.monotonic()
        position = self.recovered_position(n)
        self.launch(n, "--wsrep-start-position=%s" % position)
        self.wait_synced(n, size=size)
        self.set_evs(n)
        return time.monotonic() - started

    def bootstrap_survivor(self, n) -> float:
        """Make node n, alone in a non-Primary component, the Primary component again
        (pc.bootstrap=YES): what an admin does once the others are known to be gone."""
        started = time.monotonic()
        self.nodes[n].query("SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'")
        self.wait_synced(n, size=1)
        return time.monotonic() - started

    def healthy(self) -> bool:
        try:
            return all(self.nodes[n].running and self.nodes[n].status().get("wsrep_cluster_size") == "3"
                       and self.nodes[n].status().get("wsrep_local_state_comment") == "Synced" for n in NODES)
        except pymysql.err.Error:
            return False

    def heal(self) -> None:
        """Back to 3 Synced nodes after a test killed some: a Primary node stays, the
        killed ones rejoin one at a time; with no Primary left, the most advanced
        survivor is bootstrapped first."""
        if self.healthy():
            return
        alive = [n for n in NODES if self.nodes[n].running]
        if not alive:
            raise Unavailable("every node is down")
        statuses = {n: self.nodes[n].status() for n in alive}
        if not any(status.get("wsrep_cluster_status") == "Primary" for status in statuses.values()):
            best = max(alive, key=lambda n: int(statuses[n].get("wsrep_last_committed", -1)))
            self.bootstrap_survivor(best)
        size = len(alive)
        for n in NODES:
            if not self.nodes[n].running:
                size += 1
                self.rejoin(n, size=size)

    def destroy(self) -> None:
        """SIGKILL every node and remove the folder (throwaway data: fastest, GALERA.md 3)."""
        for n in NODES:
            self.kill(n)
        shutil.rmtree(self.base, ignore_errors=True)

    # -- use ------------------------------------------------------------------------------
    def url(self, database, first=1, only=None, user="root", password="") -> str:
        """A multi-host url with node `first` first, then the others in order (or the
        nodes in `only`, in that order)."""
        order = only or [first] + [n for n in NODES if n != first]
        credentials = user if not password else "%s:%s" % (user, password)
        return "mysql://%s@%s/%s" % (credentials, ",".join("127.0.0.1:%d" % self.nodes[n].sql for n in order),
                                     database)

    def query(self, n, sql, params=None, database=None):
        return self.nodes[n].query(sql, params, database)
