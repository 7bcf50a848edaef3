"""The database connection and every query a call or an admin command runs.

One Database object holds one connection, opened on first use. Queries are
parameterised; table names come only from the config's validated prefix.
All times are the database server's clock (dialect NOW), so several Asterisk
hosts with skewed clocks agree on when a binding expires.
"""
from __future__ import annotations

import os
import stat
import time

from .config import BREAKER_SECONDS, DatabaseSettings, VipSettings
from .dialects import dialect_for
from .events import COLUMNS as EVENT_COLUMNS, EVENTS

BINDINGS = "numbers_remember"  # the original setup's table name, kept on upgrade
# PHP Address Book: vipsticky's side table of number keys (addressbook.py keeps it
# current) and the condition for a live row in any of its schemas (see FACTS.md).
AB_KEYS = "vipsticky_addressbook_keys"
LIVE = "(%(t)s.deprecated IS NULL OR %(t)s.deprecated < '1001-01-01')"
# MySQL errors worth one more try: deadlock and lock wait (what Galera returns on a
# certification conflict), and a connection that a server restart cut.
RETRY_ON_LOCK = (1205, 1213)
RETRY_ON_RECONNECT = (2006, 2013, 2014, 2055, 4031)
# Connect failures that mean "the server is not there" (refused, timed out, a black hole
# that accepts and never greets): worth the breaker. Access denied and the like are not.
UNREACHABLE = (2002, 2003, 2006, 2013)
# A Galera node outside the primary component (the others lost) answers 1047 "WSREP has
# not yet prepared node for application use" to every statement on a table, and 1180 to
# a commit it could not replicate: for calls it is as unreachable as a server that is down.
NOT_READY = (1047, 1180)
# The retry after a certification conflict (1213) on Galera first waits until the winner's
# write is applied on this node (wsrep_sync_wait=15), so it cannot lose to that write
# again, and the server re-runs it by itself after each further conflict (up to
# wsrep_retry_autocommit times): only as many more concurrent writes of the same row,
# each winning the race in turn, could make the call fail.
CAUSAL_RETRY, SERVER_RETRIES = 15, 10
PURGE_BATCH = 1000
GALERA_PURGE_BATCH, GALERA_PURGE_PAUSE = 100, 3  # rows per batch; pause after it, in multiples of its time
CAUSAL_STATEMENTS = ("SELECT", "INSERT", "UPDATE", "DELETE", "REPLAC")  # what sync_wait may prefix
KEY = object()  # placeholder for the number key in vip_query's parameter list


class DatabaseError(Exception):
    """Any database failure, as one line that never holds a password."""
    reason = ""  # a connect failure: the server's own reason, without the url
    held_off = False  # a connect failure: the breaker held the server off


def _failure(message: str, why: str, held_off: bool = False) -> DatabaseError:
    error = DatabaseError(message)
    error.reason, error.held_off = why, held_off
    return error


class Database:
    def __init__(self, settings: DatabaseSettings, query_timeout: float | None = None, breaker: bool = True):
        """breaker: consult the breaker before connecting (calls do; the CLI always tries)."""
        self.settings = settings
        self.dialect = dialect_for(settings)
        # A call must not wait longer than connect_timeout on any read; the CLI may.
        self.query_timeout = query_timeout or settings.connect_timeout
        # The servers to try in order ((host, port) each; one None for SQLite or a socket).
        self.servers = settings.servers if settings.dialect == "mysql" and not settings.unix_socket else (None,)
        self._breakers = [None] * len(self.servers) if settings.dialect == "mysql" and settings.breaker_seconds \
            else None
        self.consult_breaker = breaker
        self._connection = None
        self.server = None  # index in servers of the one connected to
        self._connected_at = 0.0
        self._pinned = False  # inside transaction(): keep the connection whatever its server

    # -- connection -------------------------------------------------------------
    def breaker(self, index: int = 0):
        """The Breaker of servers[index], or None without breakers."""
        if self._breakers is None:
            return None
        if self._breakers[index] is None:
            self._breakers[index] = Breaker(self.settings, self.servers[index])
        return self._breakers[index]

    def connect(self, create: bool = False, avoid=None):
        """The open connection, else a new one to the first server in order that answers
        (avoid: the index of a server not to try now). Several servers share the
        connect_timeout budget: each attempt may take what is left of it divided by the
        servers still to try, so a refused one costs milliseconds and a black hole its
        share; one found unreachable is skipped by calls for breaker_seconds."""
        if self._connection is not None:
            return self._connection
        if len(self.servers) == 1:
            return self._connect_to(0, create, None)
        started = time.monotonic()
        order = [index for index in range(len(self.servers)) if index != avoid]
        failures, held_off = [], 0
        for position, index in enumerate(order):
            left = self.settings.connect_timeout - (time.monotonic() - started)
            name = _server_name(self.servers[index])
            if left <= 0.01:
                failures.append("%s: not tried, connect_timeout spent" % name)
                continue
            try:
                return self._connect_to(index, create, left / (len(order) - position))
            except DatabaseError as failure:
                held_off += failure.held_off
                failures.append("%s: %s" % (name, failure.reason))
        if held_off == len(order):
            raise DatabaseError("every server of %s was unreachable moments ago: not tried again for up to %d s "
                                "([database] breaker_seconds)" % (self.settings.safe_url,
                                                                  self.settings.breaker_seconds))
        raise DatabaseError(self.dialect.connect_failure(self.settings, "; ".join(failures)))

    def _connect_to(self, index: int, create: bool, timeout):
        """Connect to servers[index] (timeout: this attempt's seconds, None for the whole
        connect_timeout). Its DatabaseError tells the reason alone and whether the
        breaker held the server off."""
        breaker = self.breaker(index)
        if breaker is not None and self.consult_breaker and breaker.holds_off():
            raise _failure("%s was unreachable moments ago: not tried again for up to %d s ([database] "
                           "breaker_seconds)" % (self.settings.safe_url, self.settings.breaker_seconds),
                           "unreachable moments ago, not tried for up to %d s" % self.settings.breaker_seconds,
                           held_off=True)
        self.dialect.prepare(self.settings, create)
        try:
            if self.servers[index] is None:
                self._connection = self.dialect.connect(self.settings, create, self.query_timeout)
            else:
                self._connection = self.dialect.connect(self.settings, create, self.query_timeout,
                                                        self.servers[index], timeout)
        except self.dialect.driver_errors() as error:
            if breaker is not None and (mysql_error_code(error) in UNREACHABLE or self.dialect.lost_connection(error)):
                breaker.trip()
            why = reason(error)
            raise _failure(self.dialect.connect_failure(self.settings, why), _short(why)) from None
        if breaker is not None:
            breaker.reset()
        self.server, self._connected_at = index, time.monotonic()
        return self._connection

    def close(self):
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                pass  # closing a broken connection has nothing left to tell
            self._connection = None

    def run(self, sql: str, params=(), fetch: str = "none", many: bool = False, sync_wait: int = 0):
        """Run one statement, retried once: after a lock conflict (1205, or 1213, which is
        also Galera's certification conflict: the retry waits for causality), after a
        connection cut quickly (a server restart; with several servers, also a fresh
        connection, on the next server), and on the next server when this one is a
        Galera node outside the primary component. A statement that ran out of time is
        not retried. sync_wait: wsrep_sync_wait for this statement (dialect.sync_wait)."""
        sql_text = self.dialect.placeholders(sql)
        if sync_wait:
            sql_text = self.dialect.sync_wait(sync_wait, sql_text)
        if self.server and not self._pinned and \
                time.monotonic() - self._connected_at > (self.settings.breaker_seconds or BREAKER_SECONDS):
            self.close()  # a kept connection that failed over: back to the first server that answers
        avoid, passed_over = None, None
        for attempt in (1, 2):
            was_connected = self._connection is not None
            try:
                connection = self.connect(avoid=avoid)
            except DatabaseError as error:
                if passed_over is None:
                    raise
                raise DatabaseError("%s; %s" % (error, passed_over)) from None
            started = time.monotonic()
            try:
                cursor = connection.cursor()
                try:
                    if many:
                        cursor.executemany(sql_text, params)
                    else:
                        cursor.execute(sql_text, params)
                    if fetch == "one":
                        return cursor.fetchone()
                    if fetch == "all":
                        return cursor.fetchall()
                    return cursor.rowcount
                finally:
                    cursor.close()
            except DatabaseError:
                raise
            except Exception as error:
                code = mysql_error_code(error)
                server, several = self.server, len(self.servers) > 1
                if code in RETRY_ON_RECONNECT or self.dialect.lost_connection(error):
                    self.close()
                    # Cut at once (a restart, a killed node), not timed out: worth one more try.
                    quick = time.monotonic() - started < self.query_timeout / 2
                    if attempt == 1 and quick and (was_connected or several):
                        avoid = None if was_connected else server
                        if avoid is not None:
                            passed_over = "%s: %s" % (_server_name(self.servers[server]), _short(reason(error)))
                        continue
                elif code in NOT_READY:
                    breaker = self.breaker(server) if server is not None else None
                    if breaker is not None:
                        breaker.trip()
                    self.close()
                    if attempt == 1 and several:
                        avoid = server
                        passed_over = "%s: %s" % (_server_name(self.servers[server]), _short(reason(error)))
                        continue
                elif code in RETRY_ON_LOCK and attempt == 1:
                    import random  # rare path: keep it off every call's imports
                    # A retry at once can meet the same conflict again; a short random pause
                    # lets the other transaction finish first, and on Galera the retry
                    # waits until the winner's write is applied here.
                    time.sleep(random.uniform(0.01, 0.05))
                    if sql.lstrip()[:6].upper() in CAUSAL_STATEMENTS:
                        plain = self.dialect.placeholders(sql)
                        sql_text = self.dialect.sync_wait(CAUSAL_RETRY, plain, SERVER_RETRIES)
                    continue
                raise DatabaseError(reason(error)) from None
        raise AssertionError("unreachable")

    def transaction(self, statements: list[tuple[str, tuple | list]]):
        """Run statements atomically (admin commands, never per call); params that are
        a list are the rows of one executemany."""
        connection = self.connect()
        self._pinned = True
        try:
            self.run(self.dialect.BEGIN)
            for sql, params in statements:
                self.run(sql, params, many=isinstance(params, list))
            self.run("COMMIT")
        except Exception:
            try:
                connection.cursor().execute("ROLLBACK")
            except Exception:
                pass  # the connection is gone: the server rolls back by itself
            raise
        finally:
            self._pinned = False

    def now(self) -> int:
        return int(self.run("SELECT " + self.dialect.NOW, fetch="one")[0])

    # -- VIP --------------------------------------------------------------------
    def vip_lookup(self, key: str, vip: VipSettings) -> tuple[int, str, str] | None:
        """(priority, label, source) of the best VIP entry for a number key, or None.
        One statement, one round trip, an index lookup whatever the table sizes."""
        sql, params = vip_query(vip)
        row = self.run(sql, tuple(p if p is not KEY else key for p in params), fetch="one")
        if row is None:
            return None
        return int(row[0]), row[1] or "", row[2]

    def vip_add(self, key: str, priority: int, label: str) -> None:
        self.run(self._vip_upsert(), (key, priority, label))

    def vip_import(self, rows: list[tuple[str, int, str]]) -> int:
        sql = self._vip_upsert()
        self.transaction([(sql, row) for row in rows])
        return len(rows)

    def _vip_upsert(self) -> str:
        return self.dialect.upsert("vip_numbers", ("number_key", "priority", "label"), ("number_key",))

    def vip_remove(self, key: str) -> int:
        return self.run("DELETE FROM vip_numbers WHERE number_key = %s", (key,))

    def vip_list(self) -> list[tuple[str, int, str]]:
        rows = self.run("SELECT number_key, priority, label FROM vip_numbers ORDER BY priority DESC, number_key",
                         fetch="all")
        return [(row[0], int(row[1]), row[2]) for row in rows]

    def addressbook_vip_list(self, vip: VipSettings) -> list[tuple[str, int, str, str | None]]:
        """The address book's VIP entries as (key, priority, label, group), one per entry and
        group ([vip] groups; group None without them)."""
        sql, params = addressbook_vips(vip, "k.number_key, {priority}, k.label, {group}")
        rows = self.run("SELECT DISTINCT * FROM (%s) v ORDER BY 2 DESC, 1, 4" % sql, tuple(params), fetch="all")
        return [(row[0], int(row[1]), row[2] or "", row[3]) for row in rows]

    # -- sticky bindings --------------------------------------------------------
    def binding_lookup(self, key: str, queue: str) -> tuple[str, int] | None:
        """(agent, seconds_left) of the binding that serves key in queue: the queue's own,
        else the global scope's (a binding made without a queue, such as one upgraded
        from the original setup, serves every queue that has no live binding of its own).
        seconds_left <= 0 means expired (purge has not run yet): never route by it.
        On Galera it waits for causality: a binding stored through another node just
        before is seen."""
        return self.run("SELECT agent, expires_at - {now} FROM {t} WHERE number = %s AND queue IN (%s, '') "
                        "ORDER BY expires_at <= {now}, queue = '' LIMIT 1".format(now=self.dialect.NOW, t=BINDINGS),
                        (key, queue), fetch="one", sync_wait=1)

    def move_technology(self, old: str, new: str) -> int:
        """Bindings to OLD/name become NEW/name (SIP/ to PJSIP/ before Asterisk 21 drops
        chan_sip); returns how many."""
        rows = self.run("SELECT id, agent FROM %s WHERE agent LIKE %%s" % BINDINGS, (old + "/%",), fetch="all")
        moved = [(new + agent[len(old):], row_id) for row_id, agent in rows if agent.startswith(old + "/")]
        if moved:
            self.transaction([("UPDATE %s SET agent = %%s WHERE id = %%s" % BINDINGS, row) for row in moved])
        return len(moved)

    def remember(self, key: str, queue: str, agent: str, ttl: int) -> None:
        """Bind key to agent in queue's scope until now + ttl (one upsert statement)."""
        now = self.dialect.NOW
        self.run(self.dialect.upsert(BINDINGS, ("number", "queue", "agent", "last_contact", "expires_at"),
                                      ("number", "queue"), ("%s", "%s", "%s", now, now + " + %s")),
                  (key, queue, agent, ttl))

    def forget(self, key: str, queue: str | None) -> int:
        """Delete the binding in one scope, or in every scope when queue is None (on
        Galera after the node has applied a binding stored through another one)."""
        if queue is None:
            return self.run("DELETE FROM %s WHERE number = %%s" % BINDINGS, (key,), sync_wait=2)
        return self.run("DELETE FROM %s WHERE number = %%s AND queue = %%s" % BINDINGS, (key, queue), sync_wait=2)

    def bindings(self, key: str | None = None, queue: str | None = None,
                 agent: str | None = None) -> list[tuple[str, str, str, int]]:
        """Live bindings as (key, queue, agent, seconds_left), soonest expiry last."""
        where, params = ["expires_at > " + self.dialect.NOW], []
        for column, value in (("number", key), ("queue", queue), ("agent", agent)):
            if value is not None:
                where.append("%s = %%s" % column)
                params.append(value)
        rows = self.run("SELECT number, queue, agent, expires_at - %s FROM %s WHERE %s ORDER BY number, queue"
                         % (self.dialect.NOW, BINDINGS, " AND ".join(where)), tuple(params), fetch="all")
        return [(row[0], row[1], row[2], int(row[3])) for row in rows]

    def purge(self, batch: int = PURGE_BATCH) -> int:
        """Delete expired bindings in small batches: each is its own short statement, so
        a call's lookup or upsert never waits long behind it. Re-checking expires_at in
        the DELETE itself means a binding refreshed meanwhile is never removed."""
        # On Galera every batch is also applied on the other nodes, where a lookup waits for
        # causality: smaller batches, each followed by a pause three times as long as it
        # took, so the other nodes have applied one before the next comes and a lookup
        # there never waits behind a queue of deletes (nor for a CPU they all keep busy).
        return self._delete_in_batches(BINDINGS, "expires_at", 0, batch)

    def add_events(self, rows: list[tuple]) -> None:
        """Store call outcomes read from the spool (events.COLUMNS order), in one transaction."""
        if rows:
            self.transaction([("INSERT INTO %s (%s) VALUES (%s)" % (
                EVENTS, ", ".join(EVENT_COLUMNS), ", ".join(["%s"] * len(EVENT_COLUMNS))), rows)])

    def prune_events(self, days: int, batch: int = PURGE_BATCH) -> int:
        """Delete events older than days, in batches as purge does."""
        return self._delete_in_batches(EVENTS, "at", days * 86400, batch)

    def events(self, since: int) -> list[tuple]:
        """Events at or after since (epoch seconds), oldest first, as events.COLUMNS."""
        return self.run("SELECT %s FROM %s WHERE at >= %%s ORDER BY at, id" % (", ".join(EVENT_COLUMNS), EVENTS),
                        (since,), fetch="all")

    def _delete_in_batches(self, table: str, column: str, age: int, batch: int) -> int:
        galera = self.galera()
        if galera:
            batch = min(batch, GALERA_PURGE_BATCH)
        sql = self.dialect.purge_batch(table, batch, column, age)
        total = 0
        while True:
            started = time.monotonic()
            removed = self.run(sql)
            total += removed
            if removed < batch:
                return total
            if galera:
                time.sleep(GALERA_PURGE_PAUSE * (time.monotonic() - started))

    # -- introspection ----------------------------------------------------------
    def galera(self) -> bool:
        """True on a MariaDB Galera node (wsrep on)."""
        if self.dialect.name != "mysql":
            return False
        row = self.run("SHOW VARIABLES WHERE Variable_name = 'wsrep_on'", fetch="one")
        return bool(row) and row[1] == "ON"

    def schema_version(self) -> int | None:
        if "vipsticky_meta" not in self.tables():
            return None
        row = self.run("SELECT value FROM vipsticky_meta WHERE name = 'schema_version'", fetch="one")
        return int(row[0]) if row else None

    def tables(self) -> list[str]:
        return [row[0] for row in self.run(self.dialect.TABLES, fetch="all")]

    def columns(self, table: str) -> list[str]:
        sql, params = self.dialect.columns(table)
        return [row[0] for row in self.run(sql, params, fetch="all")]

    def triggers(self) -> list[str]:
        if self.dialect.TRIGGERS is None:
            return []
        return [row[0] for row in self.run(self.dialect.TRIGGERS, fetch="all")]


class Breaker:
    """A database server found unreachable is not tried again for breaker_seconds, by any
    call of any process: the next scripts of the same call and the next calls fail open
    in milliseconds instead of each waiting connect_timeout. The state is one empty file
    per server in a folder of this user's own; its time stamp is when it was last found
    down. When the time is up, the first call to come tries again (and stamps the file
    first, so the others keep failing open meanwhile); its success removes the file."""

    def __init__(self, settings: DatabaseSettings, server=None):
        """server: (host, port), default the settings' first."""
        self.seconds = settings.breaker_seconds
        host, port = server or (settings.host, settings.port)
        where = settings.unix_socket or "%s-%d" % (host, port)
        self.name = "down-" + "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in where)[-100:]
        self._probing = False
        self._path = False  # not looked for yet

    def holds_off(self) -> bool:
        """True while the server counts as down; else this call may try (and probes
        when the breaker had tripped)."""
        path = self.path()
        try:
            stamp = os.stat(path).st_mtime if path else None
        except OSError:
            return False
        if stamp is None:
            return False
        if time.time() - stamp < self.seconds:
            return True
        self._probing = True
        self.trip()
        return False

    def trip(self) -> None:
        path = self.path()
        if path:
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
                os.utime(path)
            except OSError:
                pass  # no breaker this time: the calls wait connect_timeout, as without one

    def reset(self) -> None:
        if self._probing:
            self._probing = False
            try:
                os.unlink(self.path())
            except OSError:
                pass  # gone already: another call's success closed it

    def path(self):
        """The state file, in $XDG_RUNTIME_DIR or /tmp/vipsticky-UID: a folder that only
        this user can write, or None (then there is no breaker: another user must not be
        able to make every call fail open)."""
        if self._path is False:
            self._path = None
            folder = os.environ.get("XDG_RUNTIME_DIR") or "/tmp/vipsticky-%d" % os.geteuid()
            try:
                if not os.path.lexists(folder):
                    os.mkdir(folder, 0o700)
                info = os.lstat(folder)
            except OSError:
                return None
            if info.st_uid == os.geteuid() and stat.S_ISDIR(info.st_mode) and not info.st_mode & 0o022:
                self._path = os.path.join(folder, self.name)
        return self._path


def vip_query(vip: VipSettings):
    """(sql, params) of the VIP lookup for the configured source; KEY in params stands
    for the number key."""
    parts, params = [], []
    if vip.source in ("table", "both"):
        parts.append("SELECT priority, label, 'table' AS source FROM vip_numbers WHERE number_key = %s")
        params.append(KEY)
    if vip.source in ("addressbook", "both"):
        sql, more = addressbook_vips(vip, "{priority}, k.label, 'addressbook'", "k.number_key = %s", [KEY])
        parts.append(sql)
        params.extend(more)
    sql = " UNION ALL ".join("(%s)" % part for part in parts) if len(parts) > 1 else parts[0]
    if len(parts) > 1 or vip.groups:
        sql = "SELECT * FROM (%s) v ORDER BY 1 DESC LIMIT 1" % sql
    return sql, params


def addressbook_vips(vip: VipSettings, columns: str, condition: str = "1 = 1", condition_params=()):
    """(sql, params) of a SELECT of columns over the address book's VIP entries: k is the
    key table, {priority} in columns the entry's VIP priority, {group} its group (NULL
    without [vip] groups); one row per entry and group."""
    names = addressbook_tables(vip)
    domain = ""
    if vip.addressbook_domain_id is not None:
        domain = " AND k.domain_id = %d" % vip.addressbook_domain_id
    if not vip.groups:
        return ("SELECT %s FROM %s k WHERE %s%s" % (columns.format(priority=vip.priority, group="NULL"), AB_KEYS,
                                                     condition, domain), list(condition_params))
    cases = " ".join("WHEN %s THEN %d" % ("%s", priority) for _, priority in vip.groups)
    group_names = [name for name, _ in vip.groups]
    params = (group_names if "{priority}" in columns else []) + list(condition_params) + group_names
    return ("SELECT %s FROM %s k "
            "JOIN %s ag ON ag.id = k.ab_id AND ag.domain_id = k.domain_id AND %s "
            "JOIN %s g ON g.group_id = ag.group_id AND g.domain_id = ag.domain_id AND %s "
            "WHERE %s%s AND g.group_name IN (%s)"
            % (columns.format(priority="CASE g.group_name %s END" % cases, group="g.group_name"), AB_KEYS,
               names["address_in_groups"], LIVE % {"t": "ag"}, names["group_list"], LIVE % {"t": "g"}, condition,
               domain, ", ".join(["%s"] * len(vip.groups)))), params


def addressbook_tables(vip: VipSettings) -> dict[str, str]:
    """PHP Address Book's table names, by their unprefixed name."""
    prefix = vip.addressbook_table_prefix
    return {name: prefix + name for name in ("addressbook", "group_list", "address_in_groups")}


def _short(why: str) -> str:
    """A connect failure's reason, short enough for one line about several servers."""
    import re  # a failure path; re is loaded by config already
    return re.sub(r" \(MySQL error (\d+)\)$", r" (\1)", re.sub(r" to MySQL server( on '[^']*')?", "", why))


def _server_name(server) -> str:
    return ("[%s]:%d" if ":" in server[0] else "%s:%d") % server


def mysql_error_code(error) -> int | None:
    args = getattr(error, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def reason(error) -> str:
    """One line, no password: PyMySQL's and sqlite3's messages hold none."""
    if isinstance(error, UnicodeError):
        # Its message quotes the characters it choked on: they may be a password's.
        return "a value holds characters the database connection cannot carry"
    args = getattr(error, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        text = "%s (MySQL error %d)" % (args[1], args[0])
    else:
        text = str(error) or type(error).__name__
    # PyMySQL names the host as it was given, and MySQL.connect gives it as bytes.
    text = text.replace("MySQL server on b'", "MySQL server on '", 1)
    return " ".join(text.split())[:300]
