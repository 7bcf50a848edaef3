"""Schema install and upgrade: create every table, and turn the original setup's table into ours.

Safe to rerun. `install-schema --sql` prints the same statements for a DBA.
"""
from __future__ import annotations

from .addressbook import install as install_addressbook
from .config import Config
from .database import BINDINGS, Database, DatabaseError
from .dialects import DIALECTS
from .events import EVENTS
from .number_keys import number_key
from .rules import valid_agent

SCHEMA_VERSION = 2  # 2: the events table


def install_schema(database: Database, config: Config, addressbook: bool = False) -> list[str]:
    """Create or upgrade everything; safe to rerun. Returns what was done, one line each."""
    database.connect(create=True)
    done = []
    for sql in database.dialect.ON_CREATE:
        database.run(sql)
    columns = database.columns(BINDINGS)
    if columns and "expires_at" not in columns:
        done.append(_upgrade_legacy_bindings(database, config))
    for sql in schema_statements(database.dialect.name):
        database.run(sql)
    database.run(database.dialect.upsert("vipsticky_meta", ("name", "value"), ("name",)),
                 ("schema_version", str(SCHEMA_VERSION)))
    done.append("schema version %d ready (%s)" % (SCHEMA_VERSION, database.settings.safe_url))
    if addressbook:
        done.extend(install_addressbook(database, config))
    return done


def _upgrade_legacy_bindings(database: Database, config: Config) -> str:
    """Turn the original setup's numbers_remember(id, number, date, agent) into the
    new layout under the same name; the old table is kept as numbers_remember_original."""
    staging, backup = BINDINGS + "_upgrading", BINDINGS + "_original"
    if backup in database.tables():
        raise DatabaseError("%s holds the original layout but %s already exists: "
                            "rename or drop %s, then rerun" % (BINDINGS, backup, backup))
    database.run("DROP TABLE IF EXISTS %s" % staging)  # left by an interrupted run
    database.run(bindings_ddl(database.dialect.name, staging))
    ttl = config.sticky.ttl
    newest: dict[str, tuple[int, int, str]] = {}
    skipped = 0
    for row_id, number, date, agent in database.run("SELECT id, number, date, agent FROM %s" % BINDINGS,
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
        database.run("INSERT INTO %s (id, number, queue, agent, last_contact, expires_at) "
                     "VALUES (%%s, %%s, '', %%s, %%s, %%s)" % staging, rows, many=True)
    database.transaction([(sql, ()) for sql in database.dialect.rename_tables(((BINDINGS, backup),
                                                                                (staging, BINDINGS)))])
    return ("upgraded %s from the original layout: %d binding%s kept in the global scope (they serve every "
            "queue), agents given the technology %s/ ([sticky] legacy_technology; move them with vipsticky "
            "bindings move-technology %s PJSIP), %d row%s skipped (unusable number, agent or date; duplicates); "
            "original kept as %s" % (BINDINGS, len(rows), "" if len(rows) == 1 else "s",
                                     config.sticky.legacy_technology, config.sticky.legacy_technology,
                                     skipped, "" if skipped == 1 else "s", backup))


def schema_statements(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [
            "CREATE TABLE IF NOT EXISTS vipsticky_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS vip_numbers (number_key TEXT PRIMARY KEY, "
            "priority INTEGER NOT NULL, label TEXT NOT NULL DEFAULT '')",
            bindings_ddl(dialect, BINDINGS),
            "CREATE INDEX IF NOT EXISTS %s_expires_at ON %s (expires_at)" % (BINDINGS, BINDINGS),
            "CREATE TABLE IF NOT EXISTS %s (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, "
            "call_id TEXT NOT NULL DEFAULT '', script TEXT NOT NULL, queue TEXT NOT NULL DEFAULT '', "
            "number_key TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, vip INTEGER, priority INTEGER, "
            "agent TEXT NOT NULL DEFAULT '')" % EVENTS,
            "CREATE INDEX IF NOT EXISTS %s_at ON %s (at)" % (EVENTS, EVENTS),
        ]
    return [
        "CREATE TABLE IF NOT EXISTS vipsticky_meta (name VARCHAR(64) NOT NULL PRIMARY KEY, "
        "value VARCHAR(255) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "CREATE TABLE IF NOT EXISTS vip_numbers (number_key VARCHAR(15) CHARACTER SET ascii NOT NULL PRIMARY KEY, "
        "priority INT NOT NULL, label VARCHAR(255) NOT NULL DEFAULT '') ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        bindings_ddl(dialect, BINDINGS),
        "CREATE TABLE IF NOT EXISTS %s (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, at BIGINT NOT NULL, "
        "call_id VARCHAR(64) NOT NULL DEFAULT '', script VARCHAR(32) NOT NULL, "
        "queue VARCHAR(80) NOT NULL DEFAULT '', number_key VARCHAR(15) CHARACTER SET ascii NOT NULL DEFAULT '', "
        "status VARCHAR(32) NOT NULL, vip TINYINT NULL, priority INT NULL, agent VARCHAR(120) NOT NULL DEFAULT '', "
        "KEY at (at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" % EVENTS,
    ]


def schema_script(dialect: str) -> str:
    """The core statements install-schema runs, as a script for the mysql/sqlite3 client,
    for a DBA who applies schema changes by hand (the legacy-table upgrade is not in
    it: that converts rows in Python)."""
    lines = ["-- vipsticky schema version %d for %s, written by `vipsticky install-schema --sql`" % (
        SCHEMA_VERSION, "MariaDB/MySQL" if dialect == "mysql" else "SQLite")]
    lines.extend(sql + ";" for sql in schema_statements(dialect))
    lines.append(DIALECTS[dialect].upsert("vipsticky_meta", ("name", "value"), ("name",)).replace(
        "%s, %s", "'schema_version', '%d'" % SCHEMA_VERSION) + ";")
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
