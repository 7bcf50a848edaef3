"""Every SQL statement of the project, for MariaDB/MySQL (PyMySQL) and SQLite.

One Database object holds one connection, opened on first use. Queries are
parameterised; table names come only from the config's validated prefix.
All times are the database server's clock (UNIX_TIMESTAMP() / julianday('now')),
so several Asterisk hosts with skewed clocks agree on when a binding expires.
"""
from __future__ import annotations

import os
import re
import time

from .config import Config, DatabaseSettings, NumberPlan, VipSettings

SCHEMA_VERSION = 1
BINDINGS = "numbers_remember"  # the original setup's table name, kept on upgrade
AB_KEYS = "vipsticky_addressbook_keys"
LIVE = "(%(t)s.deprecated IS NULL OR %(t)s.deprecated < '1001-01-01')"
# MySQL errors worth one more try: deadlock and lock wait (what Galera returns on a
# certification conflict), and a connection that a server restart cut.
RETRY_ON_LOCK = (1205, 1213)
RETRY_ON_RECONNECT = (2006, 2013, 2014, 2055, 4031)
PURGE_BATCH = 1000


class DatabaseError(Exception):
    """Any database failure, as one line that never holds a password."""


class Database:
    def __init__(self, settings: DatabaseSettings, query_timeout: float | None = None):
        self.settings = settings
        self.dialect = settings.dialect
        # A call must not wait longer than connect_timeout on any read; the CLI may.
        self.query_timeout = query_timeout or settings.connect_timeout
        self._connection = None
        self.created_folder = False  # install-schema made the SQLite file's folder

    # -- connection -------------------------------------------------------------
    def connect(self, create: bool = False):
        if self._connection is not None:
            return self._connection
        settings = self.settings
        if self.dialect == "sqlite":
            import sqlite3
            mode = "rwc" if create else "rw"
            folder = os.path.dirname(settings.path) or "."
            if create and not os.path.isdir(folder):
                os.makedirs(folder)
                self.created_folder = True
            try:
                # mode=rw: a call never creates an empty database file that install-schema
                # would then find owned by the wrong user.
                connection = sqlite3.connect("file:%s?mode=%s" % (_uri_path(settings.path), mode), uri=True,
                                             timeout=self.query_timeout, isolation_level=None,
                                             check_same_thread=False)
            except sqlite3.Error as error:
                raise DatabaseError("cannot open SQLite database %s: %s" % (settings.path, error)) from None
            self._connection = connection
            return connection
        import pymysql
        options = dict(
            user=settings.user, password=settings.password or "", database=settings.database,
            connect_timeout=settings.connect_timeout, read_timeout=settings.connect_timeout,
            write_timeout=self.query_timeout, autocommit=True, charset="utf8mb4",
        )
        if settings.unix_socket:
            options["unix_socket"] = settings.unix_socket
        else:
            options.update(host=settings.host, port=settings.port)
        if settings.ssl:
            options["ssl"] = {"ca": settings.ssl_ca}  # verified when a CA is given
        else:
            options["ssl_disabled"] = True
        try:
            self._connection = pymysql.connect(**options)
        except Exception as error:
            raise DatabaseError("cannot connect to %s: %s" % (settings.safe_url, _reason(error))) from None
        # PyMySQL reads the server's greeting with read_timeout, so connect with the
        # short one; the CLI's longer query timeout applies once connected (PyMySQL
        # reads this attribute before every read).
        self._connection._read_timeout = self.query_timeout
        return self._connection

    def close(self):
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                pass  # closing a broken connection has nothing left to tell
            self._connection = None

    def _run(self, sql: str, params=(), fetch: str = "none", many: bool = False):
        """Run one statement (retried once on a lock conflict or a cut connection)."""
        sql_text = sql.replace("%s", "?") if self.dialect == "sqlite" else sql
        for attempt in (1, 2):
            was_connected = self._connection is not None
            connection = self.connect()
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
                code = _mysql_code(error)
                if code in RETRY_ON_RECONNECT or (self.dialect == "mysql" and _is_connection_error(error)):
                    self.close()
                    if attempt == 1 and was_connected:
                        continue
                elif code in RETRY_ON_LOCK and attempt == 1:
                    import random  # rare path: keep it off every call's imports
                    # A retry at once can meet the same conflict again; a short random pause
                    # lets the other transaction finish first.
                    time.sleep(random.uniform(0.01, 0.05))
                    continue
                raise DatabaseError(_reason(error)) from None
        raise AssertionError("unreachable")

    def _transaction(self, statements: list[tuple[str, tuple]]):
        """Run statements atomically (used by admin commands, never per call)."""
        connection = self.connect()
        begin = "BEGIN IMMEDIATE" if self.dialect == "sqlite" else "START TRANSACTION"
        try:
            self._run(begin)
            for sql, params in statements:
                self._run(sql, params)
            self._run("COMMIT")
        except Exception:
            try:
                connection.cursor().execute("ROLLBACK")
            except Exception:
                pass  # the connection is gone: the server rolls back by itself
            raise

    def now(self) -> int:
        return int(self._run("SELECT " + self._now(), fetch="one")[0])

    def _now(self) -> str:
        if self.dialect == "sqlite":
            # Epoch seconds without a '%' that the placeholder rewrite would touch.
            return "CAST((julianday('now') - 2440587.5) * 86400 AS INTEGER)"
        return "UNIX_TIMESTAMP()"

    # -- VIP --------------------------------------------------------------------
    def vip_lookup(self, key: str, vip: VipSettings) -> tuple[int, str, str] | None:
        """(priority, label, source) of the best VIP entry for a number key, or None.
        One statement, one round trip, an index lookup whatever the table sizes."""
        sql, params = _vip_query(vip)
        row = self._run(sql, tuple(p if p is not _KEY else key for p in params), fetch="one")
        if row is None:
            return None
        return int(row[0]), row[1] or "", row[2]

    def vip_add(self, key: str, priority: int, label: str) -> None:
        self._run(_upsert(self.dialect, "vip_numbers", ("number_key", "priority", "label"), ("number_key",)),
                  (key, priority, label))

    def vip_import(self, rows: list[tuple[str, int, str]]) -> int:
        sql = _upsert(self.dialect, "vip_numbers", ("number_key", "priority", "label"), ("number_key",))
        self._transaction([(sql, row) for row in rows])
        return len(rows)

    def vip_remove(self, key: str) -> int:
        return self._run("DELETE FROM vip_numbers WHERE number_key = %s", (key,))

    def vip_list(self) -> list[tuple[str, int, str]]:
        rows = self._run("SELECT number_key, priority, label FROM vip_numbers ORDER BY priority DESC, number_key",
                         fetch="all")
        return [(row[0], int(row[1]), row[2]) for row in rows]

    def vip_sync(self, vip: VipSettings) -> int:
        """Rebuild the address-book key index from the address book (MySQL only)."""
        names = _addressbook_tables(vip)
        statements = [("DELETE FROM %s" % AB_KEYS, ())]
        for column in PHONE_COLUMNS:
            statements.append((
                "INSERT INTO {keys} (number_key, domain_id, ab_id, refs, label) "
                "SELECT k, domain_id, id, 1, label FROM ("
                " SELECT vipsticky_number_key(a.{column}) AS k, a.domain_id, a.id, {label} AS label"
                " FROM {ab} a WHERE {live}) s WHERE k IS NOT NULL "
                "ON DUPLICATE KEY UPDATE refs = refs + 1, label = VALUES(label)".format(
                    keys=AB_KEYS, column=column, label=_LABEL % {"r": "a"}, ab=names["addressbook"],
                    live=LIVE % {"t": "a"}), ()))
        self._transaction(statements)
        return int(self._run("SELECT COUNT(*) FROM %s" % AB_KEYS, fetch="one")[0])

    def sql_number_key(self, raw: str | None) -> str | None:
        """The SQL function's key for one value (tests prove it equals numbers.number_key)."""
        return self._run("SELECT vipsticky_number_key(%s)", (raw,), fetch="one")[0]

    # -- sticky bindings --------------------------------------------------------
    def binding_lookup(self, key: str, queue: str) -> tuple[str, int] | None:
        """(agent, seconds_left) of the binding for (key, queue); seconds_left <= 0 means
        expired (purge has not run yet): the caller must not be routed by it."""
        return self._run("SELECT agent, expires_at - %s FROM %s WHERE number = %%s AND queue = %%s"
                         % (self._now(), BINDINGS), (key, queue), fetch="one")

    def remember(self, key: str, queue: str, agent: str, ttl: int) -> None:
        """Bind key to agent in queue's scope until now + ttl (one upsert statement)."""
        now = self._now()
        if self.dialect == "sqlite":
            sql = ("INSERT INTO {t} (number, queue, agent, last_contact, expires_at) "
                   "VALUES (?, ?, ?, {now}, {now} + ?) ON CONFLICT (number, queue) DO UPDATE SET "
                   "agent = excluded.agent, last_contact = excluded.last_contact, expires_at = excluded.expires_at")
        else:
            sql = ("INSERT INTO {t} (number, queue, agent, last_contact, expires_at) "
                   "VALUES (%s, %s, %s, {now}, {now} + %s) ON DUPLICATE KEY UPDATE "
                   "agent = VALUES(agent), last_contact = VALUES(last_contact), expires_at = VALUES(expires_at)")
        self._run(sql.format(t=BINDINGS, now=now), (key, queue, agent, ttl))

    def forget(self, key: str, queue: str | None) -> int:
        """Delete the binding in one scope, or in every scope when queue is None."""
        if queue is None:
            return self._run("DELETE FROM %s WHERE number = %%s" % BINDINGS, (key,))
        return self._run("DELETE FROM %s WHERE number = %%s AND queue = %%s" % BINDINGS, (key, queue))

    def bindings(self, key: str | None = None, queue: str | None = None,
                 agent: str | None = None) -> list[tuple[str, str, str, int]]:
        """Live bindings as (key, queue, agent, seconds_left), soonest expiry last."""
        where, params = ["expires_at > " + self._now()], []
        for column, value in (("number", key), ("queue", queue), ("agent", agent)):
            if value is not None:
                where.append("%s = %%s" % column)
                params.append(value)
        rows = self._run("SELECT number, queue, agent, expires_at - %s FROM %s WHERE %s ORDER BY number, queue"
                         % (self._now(), BINDINGS, " AND ".join(where)), tuple(params), fetch="all")
        return [(row[0], row[1], row[2], int(row[3])) for row in rows]

    def purge(self, batch: int = PURGE_BATCH) -> int:
        """Delete expired bindings in small batches: each is its own short statement, so
        a call's lookup or upsert never waits long behind it. Re-checking expires_at in
        the DELETE itself means a binding refreshed meanwhile is never removed."""
        if self.dialect == "sqlite":
            sql = ("DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} WHERE expires_at <= {now} LIMIT {n})"
                   " AND expires_at <= {now}")
        else:
            sql = "DELETE FROM {t} WHERE expires_at <= {now} ORDER BY expires_at LIMIT {n}"
        sql = sql.format(t=BINDINGS, now=self._now(), n=int(batch))
        total = 0
        while True:
            removed = self._run(sql)
            total += removed
            if removed < batch:
                return total

    # -- schema -----------------------------------------------------------------
    def schema_version(self) -> int | None:
        if "vipsticky_meta" not in self.tables():
            return None
        row = self._run("SELECT value FROM vipsticky_meta WHERE name = 'schema_version'", fetch="one")
        return int(row[0]) if row else None

    def tables(self) -> list[str]:
        if self.dialect == "sqlite":
            rows = self._run("SELECT name FROM sqlite_master WHERE type = 'table'", fetch="all")
        else:
            rows = self._run("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
                             fetch="all")
        return [row[0] for row in rows]

    def columns(self, table: str) -> list[str]:
        if self.dialect == "sqlite":
            return [row[1] for row in self._run("PRAGMA table_info(%s)" % _identifier(table), fetch="all")]
        rows = self._run("SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
                         "AND table_name = %s ORDER BY ordinal_position", (table,), fetch="all")
        return [row[0] for row in rows]

    def triggers(self) -> list[str]:
        if self.dialect == "sqlite":
            return []
        rows = self._run("SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = DATABASE()",
                         fetch="all")
        return [row[0] for row in rows]

    def install_schema(self, config: Config, addressbook: bool = False) -> list[str]:
        """Create or upgrade everything; safe to rerun. Returns what was done, one line each."""
        self.connect(create=True)
        done = []
        if self.dialect == "sqlite":
            self._run("PRAGMA journal_mode=WAL")  # readers never wait for the one writer
        columns = self.columns(BINDINGS)
        if columns and "expires_at" not in columns:
            done.append(self._upgrade_legacy_bindings(config))
        for sql in schema_statements(self.dialect):
            self._run(sql)
        self._run(_upsert(self.dialect, "vipsticky_meta", ("name", "value"), ("name",)),
                  ("schema_version", str(SCHEMA_VERSION)))
        done.append("schema version %d ready (%s)" % (SCHEMA_VERSION, self.settings.safe_url))
        if addressbook:
            done.extend(self.install_addressbook(config))
        return done

    def _upgrade_legacy_bindings(self, config: Config) -> str:
        """Turn the original setup's numbers_remember(id, number, date, agent) into the
        new layout under the same name; the old table is kept as numbers_remember_original."""
        from .numbers import number_key  # admin path only
        from .channel import valid_agent
        staging, backup = BINDINGS + "_upgrading", BINDINGS + "_original"
        if backup in self.tables():
            raise DatabaseError("%s holds the original layout but %s already exists: "
                                "rename or drop %s, then rerun" % (BINDINGS, backup, backup))
        self._run("DROP TABLE IF EXISTS %s" % staging)  # left by an interrupted run
        self._run(bindings_ddl(self.dialect, staging))
        ttl = config.sticky.ttl
        newest: dict[str, tuple[int, int, str]] = {}
        skipped = 0
        for row_id, number, date, agent in self._run("SELECT id, number, date, agent FROM %s" % BINDINGS,
                                                     fetch="all"):
            key = number_key(number, config.numbers)
            agent = (agent or "").strip()
            if agent and "/" not in agent:
                agent = "%s/%s" % (config.sticky.legacy_technology, agent)
            date = str(date or "").strip()
            if key is None or not valid_agent(agent) or not date.isdigit():
                skipped += 1
                continue
            if key not in newest or int(date) > newest[key][1]:
                newest[key] = (int(row_id), int(date), agent)
        rows = [(row_id, key, agent, date, date + ttl) for key, (row_id, date, agent) in newest.items()]
        if rows:
            self._run("INSERT INTO %s (id, number, queue, agent, last_contact, expires_at) "
                      "VALUES (%%s, %%s, '', %%s, %%s, %%s)" % staging, rows, many=True)
        if self.dialect == "sqlite":
            self._transaction([("ALTER TABLE %s RENAME TO %s" % (BINDINGS, backup), ()),
                               ("ALTER TABLE %s RENAME TO %s" % (staging, BINDINGS), ())])
        else:
            self._run("RENAME TABLE %s TO %s, %s TO %s" % (BINDINGS, backup, staging, BINDINGS))
        return ("upgraded %s from the original layout: %d bindings kept, %d rows skipped "
                "(unusable number, agent or date; duplicates); original kept as %s"
                % (BINDINGS, len(rows), skipped, backup))

    def install_addressbook(self, config: Config) -> list[str]:
        if self.dialect != "mysql":
            raise DatabaseError("the address book needs MySQL/MariaDB, not SQLite")
        names = _addressbook_tables(config.vip)
        existing = set(self.tables())
        missing = [name for name in names.values() if name not in existing]
        if missing:
            raise DatabaseError("PHP Address Book table(s) %s not found in this database" % ", ".join(missing))
        columns = set(self.columns(names["addressbook"]))
        needed = set(PHONE_COLUMNS) | {"id", "domain_id", "deprecated", "firstname", "lastname", "company"}
        if not needed <= columns:
            raise DatabaseError("table %s lacks column(s) %s" % (names["addressbook"],
                                                                ", ".join(sorted(needed - columns))))
        for sql in addressbook_statements(config.numbers, config.vip):
            self._run(sql)
        self._run(_upsert(self.dialect, "vipsticky_meta", ("name", "value"), ("name",)),
                  ("number_plan", plan_signature(config.numbers)))
        count = self.vip_sync(config.vip)
        return ["address-book triggers on %s installed; %d number keys indexed" % (names["addressbook"], count)]

    def installed_number_plan(self) -> str | None:
        row = self._run("SELECT value FROM vipsticky_meta WHERE name = 'number_plan'", fetch="one")
        return row[0] if row else None


PHONE_COLUMNS = ("home", "mobile", "work", "fax", "phone2")
# What a call shows as VIP_LABEL for an address-book entry: the person, else the company.
_LABEL = ("LEFT(COALESCE(NULLIF(TRIM(CONCAT_WS(' ', %(r)s.firstname, %(r)s.lastname)), ''), "
          "%(r)s.company, ''), 255)")
_KEY = object()  # placeholder for the number key in a prepared parameter list


def addressbook_triggers(vip: VipSettings) -> dict[str, str]:
    """The names of the three triggers on PHP Address Book's table, by event."""
    table = _addressbook_tables(vip)["addressbook"]
    return {event: "vipsticky_%s_%s" % (table, event.lower()) for event in ("INSERT", "UPDATE", "DELETE")}


def _addressbook_tables(vip: VipSettings) -> dict[str, str]:
    prefix = vip.addressbook_table_prefix
    return {name: prefix + name for name in ("addressbook", "group_list", "address_in_groups")}


def _vip_query(vip: VipSettings):
    parts, params = [], []
    if vip.source in ("table", "both"):
        parts.append("SELECT priority, label, 'table' AS source FROM vip_numbers WHERE number_key = %s")
        params.append(_KEY)
    if vip.source in ("addressbook", "both"):
        names = _addressbook_tables(vip)
        domain = ""
        if vip.addressbook_domain_id is not None:
            domain = " AND k.domain_id = %d" % vip.addressbook_domain_id
        if not vip.groups:
            parts.append("SELECT %d, k.label, 'addressbook' FROM %s k WHERE k.number_key = %%s%s"
                         % (vip.priority, AB_KEYS, domain))
            params.append(_KEY)
        else:
            cases = " ".join("WHEN %s THEN %d" % ("%s", priority) for _, priority in vip.groups)
            params.extend(name for name, _ in vip.groups)
            parts.append(
                "SELECT CASE g.group_name %s END, k.label, 'addressbook' FROM %s k "
                "JOIN %s ag ON ag.id = k.ab_id AND ag.domain_id = k.domain_id AND %s "
                "JOIN %s g ON g.group_id = ag.group_id AND g.domain_id = ag.domain_id AND %s "
                "WHERE k.number_key = %%s%s AND g.group_name IN (%s)"
                % (cases, AB_KEYS, names["address_in_groups"], LIVE % {"t": "ag"}, names["group_list"],
                   LIVE % {"t": "g"}, domain, ", ".join(["%s"] * len(vip.groups))))
            params.append(_KEY)
            params.extend(name for name, _ in vip.groups)
    sql = " UNION ALL ".join("(%s)" % part for part in parts) if len(parts) > 1 else parts[0]
    if len(parts) > 1 or vip.groups:
        sql = "SELECT * FROM (%s) v ORDER BY 1 DESC LIMIT 1" % sql
    return sql, params


def _upsert(dialect: str, table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    values = ", ".join(["%s"] * len(columns))
    updates = [c for c in columns if c not in key]
    if dialect == "sqlite":
        return "INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) DO UPDATE SET %s" % (
            table, ", ".join(columns), values, ", ".join(key),
            ", ".join("%s = excluded.%s" % (c, c) for c in updates))
    return "INSERT INTO %s (%s) VALUES (%s) ON DUPLICATE KEY UPDATE %s" % (
        table, ", ".join(columns), values, ", ".join("%s = VALUES(%s)" % (c, c) for c in updates))


def schema_statements(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [
            "CREATE TABLE IF NOT EXISTS vipsticky_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS vip_numbers (number_key TEXT PRIMARY KEY, "
            "priority INTEGER NOT NULL, label TEXT NOT NULL DEFAULT '')",
            bindings_ddl(dialect, BINDINGS),
            "CREATE INDEX IF NOT EXISTS %s_expires_at ON %s (expires_at)" % (BINDINGS, BINDINGS),
        ]
    return [
        "CREATE TABLE IF NOT EXISTS vipsticky_meta (name VARCHAR(64) NOT NULL PRIMARY KEY, "
        "value VARCHAR(255) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "CREATE TABLE IF NOT EXISTS vip_numbers (number_key VARCHAR(15) CHARACTER SET ascii NOT NULL PRIMARY KEY, "
        "priority INT NOT NULL, label VARCHAR(255) NOT NULL DEFAULT '') ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        bindings_ddl(dialect, BINDINGS),
    ]


def schema_script(dialect: str, config: Config, addressbook: bool = False) -> str:
    """The statements install-schema runs, as a script for the mysql/sqlite3 client,
    for a DBA who applies schema changes by hand (the legacy-table upgrade is not in
    it: that converts rows in Python)."""
    lines = ["-- vipsticky schema version %d for %s, written by `vipsticky install-schema --sql`" % (
        SCHEMA_VERSION, "MariaDB/MySQL" if dialect == "mysql" else "SQLite")]
    lines.extend(sql + ";" for sql in schema_statements(dialect))
    lines.append(_upsert(dialect, "vipsticky_meta", ("name", "value"), ("name",)).replace(
        "%s, %s", "'schema_version', '%d'" % SCHEMA_VERSION) + ";")
    if addressbook:
        lines.append("-- PHP Address Book index, number plan: %s" % plan_signature(config.numbers))
        lines.append("DELIMITER ;;")
        lines.extend(sql + ";;" for sql in addressbook_statements(config.numbers, config.vip))
        lines.append("DELIMITER ;")
        lines.append("-- then fill the index: vipsticky vip sync")
    return "\n".join(lines) + "\n"


def bindings_ddl(dialect: str, table: str) -> str:
    """One row per (number key, queue); queue '' is the global scope."""
    if dialect == "sqlite":
        return ("CREATE TABLE IF NOT EXISTS %s (id INTEGER PRIMARY KEY AUTOINCREMENT, number TEXT NOT NULL, "
                "queue TEXT NOT NULL DEFAULT '', agent TEXT NOT NULL, last_contact INTEGER NOT NULL, "
                "expires_at INTEGER NOT NULL, UNIQUE (number, queue))" % table)
    return ("CREATE TABLE IF NOT EXISTS %s (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            "number VARCHAR(80) NOT NULL, queue VARCHAR(80) NOT NULL DEFAULT '', "
            "agent VARCHAR(120) NOT NULL, last_contact BIGINT NOT NULL, expires_at BIGINT NOT NULL, "
            "UNIQUE KEY number_queue (number, queue), KEY expires_at (expires_at)) "
            "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % table)


def plan_signature(plan: NumberPlan) -> str:
    return "cc=%s trunk=%s intl=%s national=%d area=%s" % (
        plan.country_code, plan.trunk_prefix, ",".join(plan.international_prefixes),
        plan.national_length, plan.area_code)


def addressbook_statements(plan: NumberPlan, vip: VipSettings) -> list[str]:
    """The key index beside PHP Address Book: a side table, the number rules as an SQL
    function, and triggers that keep the index current on every INSERT, UPDATE and
    DELETE the web UI makes. PHP Address Book's own tables only gain an index.

    The index counts references per (key, domain, entry id): an edit with history
    stamps the old row deprecated and inserts a new one with the same id, in either
    order; counting makes every order end right."""
    names = _addressbook_tables(vip)
    ab = names["addressbook"]
    whitespace = "CONCAT('^[ ', CHAR(9, 10, 11, 12, 13 USING ascii), ']+|[ ', CHAR(9, 10, 11, 12, 13 USING ascii), ']+$')"
    rules = []
    for prefix in plan.international_prefixes:
        rules.append("IF LEFT(d, {n}) = '{p}' THEN RETURN IF(n - {n} BETWEEN 8 AND 15, SUBSTRING(d, {n1}), NULL); "
                     "END IF;".format(n=len(prefix), p=prefix, n1=len(prefix) + 1))
    for prefix in (plan.trunk_prefix, plan.country_code):
        if prefix:
            rules.append("IF n = {total} AND LEFT(d, {n}) = '{p}' THEN RETURN CONCAT('{cc}', SUBSTRING(d, {n1})); "
                         "END IF;".format(total=len(prefix) + plan.national_length, n=len(prefix), p=prefix,
                                          cc=plan.country_code, n1=len(prefix) + 1))
    rules.append("IF n = {nl} THEN RETURN CONCAT('{cc}', d); END IF;".format(nl=plan.national_length,
                                                                           cc=plan.country_code))
    if plan.area_code:
        rules.append(
            "IF n < {nl} AND n >= {least} AND LEFT(CONCAT(LEFT('{area}', {nl} - n), d), {alen}) = '{area}' "
            "THEN RETURN CONCAT('{cc}', LEFT('{area}', {nl} - n), d); END IF;".format(
                nl=plan.national_length, least=plan.national_length - len(plan.area_code), area=plan.area_code,
                alen=len(plan.area_code), cc=plan.country_code))
    rules.append("IF n > {nl} AND n BETWEEN 11 AND 15 THEN RETURN d; END IF;".format(nl=plan.national_length))
    function = (
        "CREATE FUNCTION vipsticky_number_key(raw TEXT CHARACTER SET utf8mb4) "
        "RETURNS VARCHAR(15) CHARACTER SET ascii DETERMINISTIC NO SQL "
        "COMMENT 'vipsticky: numbers.number_key() in SQL, plan %s' "
        "BEGIN "
        "DECLARE t TEXT CHARACTER SET utf8mb4; DECLARE d VARCHAR(64) CHARACTER SET ascii; DECLARE n INT; "
        "IF raw IS NULL THEN RETURN NULL; END IF; "
        "SET t = REGEXP_REPLACE(raw, %s, ''); "
        "IF CHAR_LENGTH(t) > 64 OR t NOT REGEXP '^[+]?[0-9 ().-]*$' THEN RETURN NULL; END IF; "
        "SET d = REGEXP_REPLACE(t, '[^0-9]', ''); SET n = CHAR_LENGTH(d); "
        "IF LEFT(t, 1) = '+' THEN RETURN IF(n BETWEEN 8 AND 15, d, NULL); END IF; "
        "%s RETURN NULL; END" % (plan_signature(plan), whitespace, " ".join(rules)))
    apply = (
        "CREATE PROCEDURE vipsticky_ab_apply(delta INT, entry_id INT, entry_domain INT, entry_label VARCHAR(255), "
        "home TEXT, mobile TEXT, work TEXT, fax TEXT, phone2 TEXT) MODIFIES SQL DATA "
        "BEGIN DECLARE i INT DEFAULT 1; DECLARE k VARCHAR(15); "
        "WHILE i <= 5 DO "
        "SET k = vipsticky_number_key(ELT(i, home, mobile, work, fax, phone2)); "
        "IF k IS NOT NULL THEN "
        "IF delta > 0 THEN "
        "INSERT INTO {keys} (number_key, domain_id, ab_id, refs, label) VALUES (k, entry_domain, entry_id, 1, "
        "entry_label) ON DUPLICATE KEY UPDATE refs = refs + 1, label = VALUES(label); "
        "ELSE "
        "UPDATE {keys} SET refs = refs - 1 WHERE number_key = k AND domain_id = entry_domain AND ab_id = entry_id; "
        "DELETE FROM {keys} WHERE number_key = k AND domain_id = entry_domain AND ab_id = entry_id AND refs <= 0; "
        "END IF; END IF; SET i = i + 1; END WHILE; END".format(keys=AB_KEYS))

    def call(delta, row):
        return ("CALL vipsticky_ab_apply({d}, {r}.id, {r}.domain_id, {label}, {r}.home, {r}.mobile, {r}.work, "
                "{r}.fax, {r}.phone2)".format(d=delta, r=row, label=_LABEL % {"r": row}))

    live = {row: LIVE % {"t": row} for row in ("NEW", "OLD")}
    statements = [
        "CREATE TABLE IF NOT EXISTS %s (number_key VARCHAR(15) CHARACTER SET ascii NOT NULL, "
        "domain_id INT NOT NULL DEFAULT 0, ab_id INT NOT NULL, refs INT NOT NULL DEFAULT 1, "
        "label VARCHAR(255) NOT NULL DEFAULT '', PRIMARY KEY (number_key, domain_id, ab_id)) "
        "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % AB_KEYS,
        "DROP FUNCTION IF EXISTS vipsticky_number_key",
        function,
        "DROP PROCEDURE IF EXISTS vipsticky_ab_apply",
        apply,
    ]
    for event, body in (
        ("INSERT", "IF %s THEN %s; END IF" % (live["NEW"], call(1, "NEW"))),
        ("UPDATE", "BEGIN IF %s THEN %s; END IF; IF %s THEN %s; END IF; END"
         % (live["OLD"], call(-1, "OLD"), live["NEW"], call(1, "NEW"))),
        ("DELETE", "IF %s THEN %s; END IF" % (live["OLD"], call(-1, "OLD"))),
    ):
        trigger = addressbook_triggers(vip)[event]
        statements.append("DROP TRIGGER IF EXISTS %s" % trigger)
        statements.append("CREATE TRIGGER %s AFTER %s ON %s FOR EACH ROW %s" % (trigger, event, ab, body))
    # The group join looks entries up by id: give it an index if PHP Address Book has none.
    statements.append("CREATE INDEX IF NOT EXISTS vipsticky_entry ON %s (id, domain_id)"
                      % names["address_in_groups"])
    return statements


def _identifier(name: str) -> str:
    if not re.match(r"^[A-Za-z0-9_]+$", name):
        raise DatabaseError("not a table name: %r" % name)
    return name


def _uri_path(path: str) -> str:
    """A file path inside an SQLite file: URI (what would end or escape the path, quoted)."""
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def _mysql_code(error) -> int | None:
    args = getattr(error, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _is_connection_error(error) -> bool:
    return isinstance(error, (ConnectionError, TimeoutError, OSError)) or type(error).__name__ == "InterfaceError"


def _reason(error) -> str:
    """One line, no password: PyMySQL's and sqlite3's messages hold none."""
    args = getattr(error, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        text = "%s (MySQL error %d)" % (args[1], args[0])
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())[:300]
