-- vipsticky schema version 2 for SQLite, written by `vipsticky install-schema --sql`
CREATE TABLE IF NOT EXISTS vipsticky_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vip_numbers (number_key TEXT PRIMARY KEY, priority INTEGER NOT NULL, label TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS numbers_remember (id INTEGER PRIMARY KEY AUTOINCREMENT, number TEXT NOT NULL, queue TEXT NOT NULL DEFAULT '', agent TEXT NOT NULL, last_contact INTEGER NOT NULL, expires_at INTEGER NOT NULL, UNIQUE (number, queue));
CREATE INDEX IF NOT EXISTS numbers_remember_expires_at ON numbers_remember (expires_at);
CREATE TABLE IF NOT EXISTS vipsticky_events (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, call_id TEXT NOT NULL DEFAULT '', script TEXT NOT NULL, queue TEXT NOT NULL DEFAULT '', number_key TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, vip INTEGER, priority INTEGER, agent TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS vipsticky_events_at ON vipsticky_events (at);
INSERT INTO vipsticky_meta (name, value) VALUES ('schema_version', '2') ON CONFLICT (name) DO UPDATE SET value = excluded.value;
