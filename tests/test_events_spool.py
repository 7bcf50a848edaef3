"""The events spool under load: calls appending (processes, and threads of one process as in
`vipsticky serve`) while purges move it into the database. Nothing is lost, nothing counted twice."""
import multiprocessing
import os
import threading

import pytest

from agi_scripts.database import Database, DatabaseError
from agi_scripts.events import Outcome, append, ingest, line

WRITERS, THREADS, LINES = 4, 3, 300


def write_lines(spool, writer):
    def one_thread(thread):
        for number in range(LINES):
            call_id = "w%d-t%d-%d" % (writer, thread, number)
            append(spool, line("vip_or_not", call_id, Outcome("normal", "", "79130751580", False, 5), 1.0))
    threads = [threading.Thread(target=one_thread, args=(thread,)) for thread in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_appends_and_purges_at_once_lose_nothing_and_count_nothing_twice(sqlite):
    spool = sqlite.config.events.spool
    database = Database(sqlite.config.database)
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=write_lines, args=(spool, writer)) for writer in range(WRITERS)]
    for process in writers:
        process.start()
    stored = 0
    while any(process.is_alive() for process in writers):
        stored += ingest(database, spool)[0]
    stored += ingest(database, spool)[0]
    assert all(process.exitcode == 0 for process in writers)
    call_ids = [row[0] for row in database.run("SELECT call_id FROM vipsticky_events", fetch="all")]
    database.close()
    expected = WRITERS * THREADS * LINES
    assert stored == len(call_ids) == len(set(call_ids)) == expected
    assert not os.path.exists(spool) and not os.path.exists(spool + ".ingesting")


def test_a_failed_ingest_keeps_its_lines_for_the_next_purge(sqlite, tmp_path):
    spool = sqlite.config.events.spool
    append(spool, line("delnum", "c1", Outcome("deleted", "", "79130751580"), 1.0))
    broken = Database(sqlite.config.database._replace(path=str(tmp_path / "missing" / "x.sqlite3")))
    with pytest.raises(DatabaseError):
        ingest(broken, spool)
    assert os.path.exists(spool + ".ingesting")  # claimed, not stored: kept
    append(spool, line("delnum", "c2", Outcome("none", "", "79130751580"), 2.0))
    database = Database(sqlite.config.database)
    assert ingest(database, spool) == (2, 0)  # the claimed file first, then the new spool
    assert [row[0] for row in database.run("SELECT call_id FROM vipsticky_events ORDER BY at", fetch="all")] == \
        ["c1", "c2"]
    database.close()
