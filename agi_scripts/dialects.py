"""What differs between MariaDB/MySQL and SQLite: one class per dialect, nothing else.

Clock, placeholders, upsert, transactions, introspection and how to connect. The
rest of the project writes SQL with %s placeholders and asks the dialect for the
parts that differ.
"""
import os


class SQLite:
    name = "sqlite"
    # Epoch seconds on the database's clock, without a '%' that the placeholder rewrite would touch.
    NOW = "CAST((julianday('now') - 2440587.5) * 86400 AS INTEGER)"
    BEGIN = "BEGIN IMMEDIATE"  # take the write lock at once: no upgrade deadlock later
    TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
    ON_CREATE = ("PRAGMA journal_mode=WAL",)  # readers never wait for the one writer

    @staticmethod
    def placeholders(sql: str) -> str:
        return sql.replace("%s", "?")

    @staticmethod
    def upsert(table: str, columns, key, values=None) -> str:
        """INSERT ... or UPDATE the non-key columns; values are SQL expressions (default %s each)."""
        values = values or ["%s"] * len(columns)
        return "INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) DO UPDATE SET %s" % (
            table, ", ".join(columns), ", ".join(values), ", ".join(key),
            ", ".join("%s = excluded.%s" % (c, c) for c in columns if c not in key))

    @staticmethod
    def columns(table: str):
        """(sql, params) listing a table's columns in order."""
        return "SELECT name FROM pragma_table_info(%s) ORDER BY cid", (table,)

    TRIGGERS = None  # SQLite holds no triggers of ours

    @staticmethod
    def rename_tables(pairs):
        """Statements that rename (old, new) pairs, in order, inside one transaction."""
        return ["ALTER TABLE %s RENAME TO %s" % pair for pair in pairs]

    @classmethod
    def purge_batch(cls, table: str, batch: int, column: str = "expires_at", age: int = 0) -> str:
        """Delete up to batch rows whose column (epoch seconds) is at least age seconds
        past; the condition is checked again in the DELETE itself."""
        return ("DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} WHERE {c} <= {now} - {a} LIMIT {n})"
                " AND {c} <= {now} - {a}".format(t=table, c=column, now=cls.NOW, a=int(age), n=int(batch)))

    @staticmethod
    def prepare(settings, create: bool) -> None:
        """Make the database file's folder when creating."""
        folder = os.path.dirname(settings.path) or "."
        if create and not os.path.isdir(folder):
            os.makedirs(folder)

    @staticmethod
    def connect(settings, create: bool, query_timeout: float):
        import sqlite3
        # mode=rw: a call never creates an empty database file that install-schema
        # would then find owned by the wrong user.
        return sqlite3.connect("file:%s?mode=%s" % (_uri_path(settings.path), "rwc" if create else "rw"),
                               uri=True, timeout=query_timeout, isolation_level=None, check_same_thread=False)

    @staticmethod
    def sync_wait(mask: int, sql: str, retries: int = 0) -> str:
        return sql  # one file: every read sees the last write

    @staticmethod
    def driver_errors():
        import sqlite3
        return sqlite3.Error

    @staticmethod
    def connect_failure(settings, reason: str) -> str:
        return "cannot open SQLite database %s: %s" % (settings.path, reason)

    @staticmethod
    def lost_connection(error) -> bool:
        return False  # a file does not go away between statements


class MySQL:
    name = "mysql"
    NOW = "UNIX_TIMESTAMP()"
    BEGIN = "START TRANSACTION"
    TABLES = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
    TRIGGERS = "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = DATABASE()"
    ON_CREATE = ()

    @staticmethod
    def rename_tables(pairs):
        return ["RENAME TABLE " + ", ".join("%s TO %s" % pair for pair in pairs)]  # atomic by itself

    @staticmethod
    def placeholders(sql: str) -> str:
        return sql

    @staticmethod
    def upsert(table: str, columns, key, values=None) -> str:
        values = values or ["%s"] * len(columns)
        return "INSERT INTO %s (%s) VALUES (%s) ON DUPLICATE KEY UPDATE %s" % (
            table, ", ".join(columns), ", ".join(values),
            ", ".join("%s = VALUES(%s)" % (c, c) for c in columns if c not in key))

    @staticmethod
    def columns(table: str):
        return ("SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
                "AND table_name = %s ORDER BY ordinal_position", (table,))

    @classmethod
    def purge_batch(cls, table: str, batch: int, column: str = "expires_at", age: int = 0) -> str:
        return "DELETE FROM %s WHERE %s <= %s - %d ORDER BY %s LIMIT %d" % (
            table, column, cls.NOW, int(age), column, int(batch))

    @staticmethod
    def prepare(settings, create: bool) -> None:
        pass  # the server holds the files

    @staticmethod
    def connect_params(settings, **overrides) -> dict:
        """pymysql.connect() keyword arguments for these settings (also for tests,
        benchmarks and ./dev); overrides replace keys."""
        params = dict(
            # Bytes: PyMySQL would encode a str password as latin-1 (MariaDB stores UTF-8).
            user=settings.user, password=(settings.password or "").encode("utf-8"), database=settings.database,
            connect_timeout=settings.connect_timeout, read_timeout=settings.connect_timeout,
            write_timeout=settings.connect_timeout, autocommit=True, charset="utf8mb4",
        )
        if settings.unix_socket:
            params["unix_socket"] = settings.unix_socket
        else:
            params.update(host=settings.host, port=settings.port)
        if settings.ssl:
            params["ssl"] = {"ca": settings.ssl_ca}  # verified when a CA is given
        else:
            params["ssl_disabled"] = True
        params.update(overrides)
        return params

    @classmethod
    def connect(cls, settings, create: bool, query_timeout: float, server=None, timeout=None):
        """server: (host, port) of settings.servers (default: the first); timeout: the
        seconds this attempt may take to connect and log in (default connect_timeout)."""
        import pymysql
        overrides = {"write_timeout": query_timeout}
        if server is not None and not settings.unix_socket:
            overrides.update(host=server[0], port=server[1])
        host = overrides.get("host", settings.host)
        if not settings.unix_socket and not settings.ssl and host.isascii():
            # getaddrinfo() encodes a str host with the idna codec, whose first use in a
            # process imports encodings.idna, stringprep and unicodedata: a millisecond of
            # every call. An ASCII name as bytes skips it. (TLS checks the name: a str.)
            overrides["host"] = host.encode("ascii")
        if timeout is not None:
            overrides.update(connect_timeout=timeout, read_timeout=timeout)
        connection = pymysql.connect(**cls.connect_params(settings, **overrides))
        # PyMySQL reads the server's greeting with read_timeout, so connect with the
        # short one; the CLI's longer query timeout applies once connected (PyMySQL
        # reads this attribute before every read).
        connection._read_timeout = query_timeout
        return connection

    @staticmethod
    def sync_wait(mask: int, sql: str, retries: int = 0) -> str:
        """sql made to wait, on a Galera node, until the node has applied every write the
        cluster committed before it (wsrep_sync_wait: 1 reads, 2 UPDATE/DELETE, 4 INSERT,
        15 all) and, with retries, re-run by the server itself up to that many times
        when it loses a certification conflict (wsrep_retry_autocommit). A MariaDB-only
        comment: other servers, and MariaDB without Galera, run the statement as it is,
        in the same single round trip."""
        if retries:
            return "/*M!100102 SET STATEMENT wsrep_sync_wait=%d, wsrep_retry_autocommit=%d FOR */ %s" % (
                mask, retries, sql)
        return "/*M!100102 SET STATEMENT wsrep_sync_wait=%d FOR */ %s" % (mask, sql)

    @staticmethod
    def driver_errors():
        return Exception  # PyMySQL raises its own errors and plain OSError/socket errors

    @staticmethod
    def connect_failure(settings, reason: str) -> str:
        return "cannot connect to %s: %s" % (settings.safe_url, reason)

    @staticmethod
    def lost_connection(error) -> bool:
        return isinstance(error, (ConnectionError, TimeoutError, OSError)) or type(error).__name__ == "InterfaceError"


DIALECTS = {SQLite.name: SQLite, MySQL.name: MySQL}


def dialect_for(settings):
    """The dialect class of a DatabaseSettings (settings.dialect is mysql or sqlite)."""
    return DIALECTS[settings.dialect]


def _uri_path(path: str) -> str:
    """A file path inside an SQLite file: URI (what would end or escape the path, quoted)."""
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
