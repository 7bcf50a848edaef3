"""Call outcomes: one line per script run appended to the spool file, moved into the events table by purge.

A call only appends a line (about 10 microseconds; a database insert would cost an InnoDB
commit, milliseconds, on every call). Writers hold a shared flock while they append;
ingest() takes the exclusive lock, renames the spool aside and reads it after, so a
line is neither lost nor read twice, and a writer that opened the old file before the
rename sees so (another inode) and appends to the new one.
"""
import fcntl
import os

from .records import record

EVENTS = "vipsticky_events"
COLUMNS = ("at", "call_id", "script", "queue", "number_key", "status", "vip", "priority", "agent")
FIELD_LIMITS = (None, 64, 32, 80, 15, 32, None, None, 120)  # the table's column sizes


class Outcome(record("Outcome", "status queue key vip priority agent", defaults=("", None, None, None, ""))):
    """What one script run ended with: status as in the STICKY_STATUS/DELNUM_STATUS
    vocabulary ('vip'/'normal' for vip_or_not), the queue ('' global), the number key,
    VIP yes/no and QUEUE_PRIO where the script knows them, the agent involved."""
    __slots__ = ()


def line(script: str, call_id: str, outcome: Outcome, at: float) -> str:
    """One spool line: tab-separated, no field may hold a tab or a line break."""
    values = ("%.3f" % at, call_id, script, outcome.queue, outcome.key or "", outcome.status,
              "" if outcome.vip is None else ("1" if outcome.vip else "0"),
              "" if outcome.priority is None else str(outcome.priority), outcome.agent or "")
    return "\t".join(_clean(value, limit) for value, limit in zip(values, FIELD_LIMITS)) + "\n"


def _clean(value, limit) -> str:
    text = str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")
    return text[:limit] if limit else text


def append(path: str, text: str) -> None:
    """Append one line to the spool; OSError when it cannot be written."""
    data = text.encode("utf-8", "replace")
    for _ in range(3):
        handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(handle, fcntl.LOCK_SH)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            opened = os.fstat(handle)
            if current == opened.st_ino:
                if opened.st_size == 0 and opened.st_uid == 0 and os.geteuid() == 0:
                    _hand_over(handle, path)
                os.write(handle, data)
                return
        finally:
            os.close(handle)  # also drops the lock
    raise OSError(0, "the spool file was renamed three times while writing", path)


def _hand_over(handle: int, path: str) -> None:
    """A spool root just created (vipsticky try, a purge by hand) belongs to the owner of its
    folder (Asterisk's user, in /var/lib/asterisk): else the calls could not append to it."""
    folder = os.stat(os.path.dirname(path) or ".")
    if folder.st_uid != 0:
        os.fchown(handle, folder.st_uid, folder.st_gid)


def claim(path: str) -> str | None:
    """Rename the spool aside (under the exclusive lock, so no append is half done) and
    return the claimed file's path; None when there is nothing to claim. A claimed file
    left by an ingest that failed is returned first, before a new one is taken."""
    claimed = path + ".ingesting"
    if os.path.exists(claimed):
        return claimed
    try:
        handle = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.rename(path, claimed)
    finally:
        os.close(handle)
    return claimed


def parse(text: str) -> tuple[list[tuple], int]:
    """(rows for the events table, lines that could not be read)."""
    rows, bad = [], 0
    for entry in text.splitlines():
        fields = entry.split("\t")
        if len(fields) != len(COLUMNS):
            bad += bool(entry.strip())
            continue
        try:
            at = int(float(fields[0]))
            vip = None if fields[6] == "" else int(fields[6])
            priority = None if fields[7] == "" else int(fields[7])
        except ValueError:
            bad += 1
            continue
        rows.append((at, fields[1], fields[2], fields[3], fields[4], fields[5], vip, priority, fields[8]))
    return rows, bad


def ingest(database, path: str) -> tuple[int, int]:
    """Move the spool's lines into the events table: (events stored, unreadable lines skipped).
    The claimed file is removed only once its rows are committed: a failure keeps it for
    the next run."""
    stored = skipped = 0
    for _ in range(2):  # a claimed file left over, then the current spool
        claimed = claim(path)
        if claimed is None:
            break
        with open(claimed, encoding="utf-8", errors="replace") as handle:
            rows, bad = parse(handle.read())
        database.add_events(rows)  # one transaction: all of the file or none of it
        os.unlink(claimed)
        stored, skipped = stored + len(rows), skipped + bad
    return stored, skipped
