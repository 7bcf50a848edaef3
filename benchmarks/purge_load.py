"""Section c: purge of a million expired bindings while another connection looks bindings up back to back."""
import array
import random
import threading
import time
from itertools import islice

from agi_scripts.database import Database
from databases import AGENT
from report import Phase, summary

TITLE = "purge under load"
LIVE = 1000  # bindings that stay, the ones looked up
INSERT = "INSERT INTO numbers_remember (number, queue, agent, last_contact, expires_at) VALUES "
VALUES = "('%s','','%s',%d,%d)"


def measure(report, workspace, quick):
    rows = 20000 if quick else 1000000
    for label, dialect in (("MariaDB", "mysql"), ("SQLite", "sqlite")):
        _path, config = workspace.setup("purge_" + dialect, dialect)
        admin = Database(config.database, query_timeout=3600)
        now = admin.now()
        live = ["7923%07d" % i for i in range(LIVE)]
        with Phase(report, "c: insert %s expired + %d live bindings (%s)" % ("{:,}".format(rows), LIVE, label)):
            fill(admin, dialect, now, rows, live)
        looker = Database(config.database)
        rng = random.Random(7)
        errors = []

        def lookups(into, stop):
            """Back to back from the looker's own connection, as calls would do meanwhile."""
            try:
                while not stop.is_set():
                    key = rng.choice(live)
                    started = time.perf_counter()
                    row = looker.binding_lookup(key, "")
                    into.append(time.perf_counter() - started)
                    if row is None or row[1] <= 0:
                        raise RuntimeError("live binding %s not found" % key)
            except Exception as error:
                errors.append(error)

        def looking_up(into):
            stop = threading.Event()
            thread = threading.Thread(target=lookups, args=(into, stop), daemon=True)
            thread.start()
            return stop, thread

        # The same loop with nothing else running, as the baseline (this machine's own noise).
        baseline = array.array("d")
        stop, thread = looking_up(baseline)
        time.sleep(1.0 if quick else 5.0)
        stop.set()
        thread.join(timeout=30)
        during = array.array("d")  # SQLite answers in microseconds: millions of samples
        stop, thread = looking_up(during)
        time.sleep(0.05)
        with Phase(report, "c: purge %s expired bindings while looking up (%s)" % ("{:,}".format(rows), label)) as ph:
            removed = admin.purge()
        stop.set()
        thread.join(timeout=30)
        if errors:
            raise errors[0]
        remaining = looker.run("SELECT COUNT(*) FROM numbers_remember", fetch="one")[0]
        looker.close()
        admin.close()
        if removed != rows or remaining != LIVE:
            raise RuntimeError("purge removed %d (expected %d), %d rows left (expected %d)" % (
                removed, rows, remaining, LIVE))
        stats = summary(during)
        report.once("c", "purge %s expired bindings, %s" % ("{:,}".format(rows), label), ph.seconds,
                    rows_per_second=rows / ph.seconds)
        report.row("c", "  binding_lookup, same loop %d s before the purge, %s" % (1 if quick else 5, label), "ms",
                   summary(baseline))
        report.row("c", "  binding_lookup during the purge, %s" % label, "ms", stats, target="p99 <= 10 ms",
                   met=stats["p99"] is not None and stats["p99"] <= 0.010)
        report.details.setdefault("c", {})[label] = dict(rows=rows, purge_s=ph.seconds, lookups=len(during),
                                                         lookup_during=stats, lookup_idle=summary(baseline),
                                                         over_10ms=sum(1 for v in during if v > 0.010))
        workspace.drop("purge_" + dialect, dialect)


def fill(admin, dialect, now, rows, live):
    """`rows` bindings that expired over the last ~28 hours, and the `live` ones, through
    the admin's connection (MariaDB: multi-row INSERTs; SQLite: one transaction)."""
    expired = (("7913%07d" % i, "PJSIP/agent%d" % (i % 50), now - 200000, now - 1 - (i * 7919) % 100000)
               for i in range(rows))
    current = [(key, AGENT, now, now + 86400) for key in live]
    connection = admin.connect()
    if dialect == "sqlite":
        connection.execute("BEGIN")
        connection.executemany(INSERT + "(?, '', ?, ?, ?)", expired)
        connection.executemany(INSERT + "(?, '', ?, ?, ?)", current)
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
        return
    with connection.cursor() as cursor:
        for _ in range(0, rows, 5000):
            cursor.execute(INSERT + ",".join(VALUES % binding for binding in islice(expired, 5000)))
        cursor.execute(INSERT + ",".join(VALUES % binding for binding in current))
        cursor.execute("ANALYZE TABLE numbers_remember")
        cursor.fetchall()
