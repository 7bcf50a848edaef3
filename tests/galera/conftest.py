"""The Galera tests' cluster: three real MariaDB Galera nodes on loopback (cluster.py,
../shared/GALERA.md), started once for the session (about 15 s) and removed at the end.

Under CI (env CI set) a cluster that cannot start FAILS the tests; elsewhere they skip
with the reason (not root, no galera-4, ...). Each test gets a fresh database on the
cluster and a config file per node (the url lists that node first, then the others), as
three Asterisk servers would each list their nearest node first. A test that killed
nodes leaves the cluster to `heal`, which the next test's fixture runs.
"""
import os
import uuid

import pytest

from agi_scripts.asterisk_standin import Peer
from agi_scripts.config import load
from agi_scripts.database import Database
from utils import install_into, write_config

from .cluster import NODES, GaleraCluster, Unavailable, missing

STRICT = bool(os.environ.get("CI"))


def unavailable(reason: str):
    if STRICT:
        pytest.fail("Galera cluster: %s" % reason)
    pytest.skip("Galera cluster: %s" % reason)


@pytest.fixture(scope="session")
def cluster():
    why = missing()
    if why:
        unavailable(why)
    made = GaleraCluster()
    try:
        made.start()
    except Unavailable as error:
        made.destroy()
        unavailable(str(error))
    print("\nGalera cluster of 3 started in %.1f s (install-db %.1f s) in %s"
          % (made.timings["start_s"], made.timings["install_s"], made.base))
    yield made
    made.destroy()


class GaleraSetup:
    """One test's database on the cluster and one config file per node."""

    def __init__(self, cluster, folder, connect_timeout=2, extra=""):
        self.cluster = cluster
        self.folder = str(folder)
        self.name = "vs_%s" % uuid.uuid4().hex[:10]
        self.breakers = os.path.join(self.folder, "breakers")  # XDG_RUNTIME_DIR: this test's own
        os.makedirs(self.breakers, mode=0o700, exist_ok=True)
        cluster.query(1, "CREATE DATABASE %s CHARACTER SET utf8mb4" % self.name)
        self.rewrite(connect_timeout, extra)

    def rewrite(self, connect_timeout=2, extra=""):
        for n in NODES:
            write_config(self.path(n), self.cluster.url(self.name, first=n), connect_timeout, extra)

    def path(self, n) -> str:
        return os.path.join(self.folder, "node%d.conf" % n)

    def env(self, n) -> dict:
        return dict(os.environ, VIPSTICKY_CONFIG=self.path(n), XDG_RUNTIME_DIR=self.breakers)

    def config(self, n=1):
        return load(self.path(n))

    def database(self, n=1, **options) -> Database:
        return Database(self.config(n).database, **options)

    def install(self, addressbook=False):
        return install_into(self.config(1), addressbook=addressbook)

    def run(self, n, script, args, asterisk=None, callerid="", **options):
        """A per-call script on the Asterisk server whose nearest node is n."""
        return Peer(asterisk).run_script(script, list(args), callerid=callerid, process_env=self.env(n), **options)

    def query(self, n, sql, params=None):
        """Rows straight from node n (waiting for causality: what the cluster holds now)."""
        connection = self.cluster.nodes[n].connect(self.name)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION wsrep_sync_wait = 15")
                cursor.execute(sql, params)
                return cursor.fetchall()
        finally:
            connection.close()

    def drop(self):
        try:
            self.cluster.heal()
            self.cluster.query(1, "DROP DATABASE IF EXISTS %s" % self.name)
        except Exception:
            pass  # a cluster that could not heal is reported by the next test


@pytest.fixture
def galera(cluster, tmp_path):
    """A healthy cluster and a fresh database with the schema installed."""
    cluster.heal()
    made = GaleraSetup(cluster, tmp_path)
    made.install()
    yield made
    made.drop()
