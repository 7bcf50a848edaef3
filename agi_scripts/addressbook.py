"""PHP Address Book as a VIP source: the number rules as an SQL function, triggers and their side table.

PHP Address Book's own tables only gain triggers and one index; the keys live in
vipsticky's side table (database.AB_KEYS), which the per-call lookup reads.
"""
from __future__ import annotations

import json

from .config import Config, NumberPlan, VipSettings
from .database import AB_KEYS, LIVE, Database, DatabaseError, addressbook_tables
from .number_keys import SURROUNDING_WHITESPACE

PHONE_COLUMNS = ("home", "mobile", "work", "fax", "phone2")
GROUP_INDEX = "vipsticky_entry"  # the one index vipsticky adds to PHP Address Book (address_in_groups)
UNUSABLE_SHOWN = 50  # entries without a key listed by install and sync; the rest are counted
# Every string parameter and variable of the routines and triggers names its character
# set: without one it takes the database's default (latin1 in an old database), and a
# Cyrillic name then fails with error 1366 inside the trigger. LONGTEXT holds whatever a
# TEXT column of any character set holds (a longer value would be an error, not a cut).
TEXT = "LONGTEXT CHARACTER SET utf8mb4"
# What a trigger swallowed (vipsticky_meta rows): how many statements failed since the
# last sync, and the last error. sync rebuilds the index and clears them.
FAILURES, LAST_FAILURE = "addressbook_trigger_failures", "addressbook_trigger_last_failure"
# What a call shows as VIPLABEL for an address-book entry: the person, else the company.
LABEL = ("LEFT(COALESCE(NULLIF(TRIM(CONCAT_WS(' ', %(r)s.firstname, %(r)s.lastname)), ''), "
         "%(r)s.company, ''), 255)")


def trigger_names(vip: VipSettings) -> dict[str, str]:
    """The names of the three triggers on PHP Address Book's table, by event."""
    table = addressbook_tables(vip)["addressbook"]
    return {event: "vipsticky_%s_%s" % (table, event.lower()) for event in ("INSERT", "UPDATE", "DELETE")}


def plan_signature(plan: NumberPlan) -> str:
    return "cc=%s trunk=%s intl=%s national=%d area=%s" % (
        plan.country_code, plan.trunk_prefix, ",".join(plan.international_prefixes),
        plan.national_length, plan.area_code)


def install(database: Database, config: Config) -> list[str]:
    """Side table, function and triggers for the configured plan, then the index filled."""
    if database.dialect.name != "mysql":
        raise DatabaseError("the address book needs MySQL/MariaDB, not SQLite")
    names = addressbook_tables(config.vip)
    existing = set(database.tables())
    missing = [name for name in names.values() if name not in existing]
    if missing:
        raise DatabaseError("PHP Address Book table(s) %s not found in this database" % ", ".join(missing))
    columns = set(database.columns(names["addressbook"]))
    needed = set(PHONE_COLUMNS) | {"id", "domain_id", "deprecated", "firstname", "lastname", "company"}
    if not needed <= columns:
        raise DatabaseError("table %s lacks column(s) %s" % (names["addressbook"],
                                                            ", ".join(sorted(needed - columns))))
    for sql in statements(config.numbers, config.vip) + [plan_statement(config.numbers)]:
        database.run(sql)
    done = ["address-book triggers on %s installed for the number plan %s"
            % (names["addressbook"], plan_signature(config.numbers))]
    return done + indexed(database, config.vip)


def update(database: Database, config: Config) -> list[str]:
    """`vipsticky vip sync`: function and triggers made anew when they were made for
    another [numbers] plan (or are missing), then the index rebuilt from the address
    book. Returns what was done and the entries that give no key, one line each."""
    if installed_number_plan(database) != plan_signature(config.numbers) or \
            set(trigger_names(config.vip).values()) - set(database.triggers()):
        return install(database, config)
    return indexed(database, config.vip)


def indexed(database: Database, vip: VipSettings) -> list[str]:
    """Rebuild the index; one line with the count, then one per entry that gives no key."""
    lines = ["%d address-book number keys indexed" % sync(database, vip)]
    unusable = entries_without_key(database, vip)
    for entry_id, name, column, value in unusable[:UNUSABLE_SHOWN]:
        lines.append("entry %d (%s) %s = %s gives no number key: fix it in PHP Address Book"
                     % (entry_id, name, column, json.dumps(value[:80], ensure_ascii=False)))
    if len(unusable) > UNUSABLE_SHOWN:
        lines.append("... and %d more entries that give no number key" % (len(unusable) - UNUSABLE_SHOWN))
    return lines


def entries_without_key(database: Database, vip: VipSettings) -> list[tuple[int, str, str, str]]:
    """(id, name, phone column, value) of every live entry whose phone field holds
    something that is no usable number (a note beside it, two numbers in one field)."""
    names = addressbook_tables(vip)
    found = []
    for column in PHONE_COLUMNS:
        rows = database.run(
            "SELECT a.id, {label}, a.{column} FROM {ab} a WHERE {live} AND TRIM(a.{column}) <> '' "
            "AND vipsticky_number_key(a.{column}) IS NULL".format(
                label=LABEL % {"r": "a"}, column=column, ab=names["addressbook"], live=LIVE % {"t": "a"}),
            fetch="all")
        found.extend((int(entry_id), name or "", column, value) for entry_id, name, value in rows)
    return sorted(found)


def remove(database: Database, vip: VipSettings) -> list[str]:
    """Everything vipsticky added to PHP Address Book's database, gone: the triggers, the
    routines, the side table, the index on address_in_groups and the meta rows. PHP
    Address Book's tables are left as they were before install."""
    names = addressbook_tables(vip)
    work = ["DROP TRIGGER IF EXISTS %s" % trigger for trigger in trigger_names(vip).values()]
    work += ["DROP PROCEDURE IF EXISTS vipsticky_ab_apply", "DROP FUNCTION IF EXISTS vipsticky_number_key",
             "DROP TABLE IF EXISTS %s" % AB_KEYS,
             "DROP INDEX IF EXISTS %s ON %s" % (GROUP_INDEX, names["address_in_groups"])]
    for sql in work:
        database.run(sql)
    if "vipsticky_meta" in database.tables():
        database.run("DELETE FROM vipsticky_meta WHERE name IN ('number_plan', %s, %s)", (FAILURES, LAST_FAILURE))
    return ["removed from %s: triggers %s, function vipsticky_number_key, procedure vipsticky_ab_apply, "
            "table %s, index %s on %s" % (database.settings.safe_url, ", ".join(trigger_names(vip).values()),
                                           AB_KEYS, GROUP_INDEX, names["address_in_groups"])]


def plan_statement(plan: NumberPlan) -> str:
    """Records the plan the function was made for (`vipsticky doctor` compares it)."""
    return ("INSERT INTO vipsticky_meta (name, value) VALUES ('number_plan', '%s') "
            "ON DUPLICATE KEY UPDATE value = VALUES(value)" % plan_signature(plan))


def script(config: Config) -> str:
    """The address-book add-on as a script for the mysql client (install-schema --sql
    --addressbook), for a DBA; its last statement records the number plan."""
    lines = ["-- vipsticky PHP Address Book add-on for the number plan %s" % plan_signature(config.numbers),
             "-- (after the core schema; then fill the index: vipsticky vip sync)", "DELIMITER ;;"]
    lines.extend(sql + ";;" for sql in statements(config.numbers, config.vip) + [plan_statement(config.numbers)])
    lines.append("DELIMITER ;")
    return "\n".join(lines) + "\n"


def sync(database: Database, vip: VipSettings) -> int:
    """Rebuild the address-book key index from the address book; the number of keys."""
    names = addressbook_tables(vip)
    work = [("DELETE FROM %s" % AB_KEYS, ()),
            ("DELETE FROM vipsticky_meta WHERE name IN (%s, %s)", (FAILURES, LAST_FAILURE))]
    for column in PHONE_COLUMNS:
        work.append((
            "INSERT INTO {keys} (number_key, domain_id, ab_id, refs, label) "
            "SELECT k, domain_id, id, 1, label FROM ("
            " SELECT vipsticky_number_key(a.{column}) AS k, a.domain_id, a.id, {label} AS label"
            " FROM {ab} a WHERE {live}) s WHERE k IS NOT NULL "
            "ON DUPLICATE KEY UPDATE refs = refs + 1, label = VALUES(label)".format(
                keys=AB_KEYS, column=column, label=LABEL % {"r": "a"}, ab=names["addressbook"],
                live=LIVE % {"t": "a"}), ()))
    database.transaction(work)
    return int(database.run("SELECT COUNT(*) FROM %s" % AB_KEYS, fetch="one")[0])


def sql_number_key(database: Database, raw: str | None) -> str | None:
    """The SQL function's key for one value (tests prove it equals number_keys.number_key)."""
    return database.run("SELECT vipsticky_number_key(%s)", (raw,), fetch="one")[0]


def trigger_failures(database: Database) -> tuple[int, str] | None:
    """(count, last error) of the failures the triggers swallowed since the last sync or
    install, or None: PHP Address Book's writes went on, but the index may miss them."""
    rows = dict(database.run("SELECT name, value FROM vipsticky_meta WHERE name IN (%s, %s)",
                             (FAILURES, LAST_FAILURE), fetch="all"))
    if FAILURES not in rows:
        return None
    return int(rows[FAILURES]), rows.get(LAST_FAILURE, "")


def installed_number_plan(database: Database) -> str | None:
    row = database.run("SELECT value FROM vipsticky_meta WHERE name = 'number_plan'", fetch="one")
    return row[0] if row else None


def statements(plan: NumberPlan, vip: VipSettings) -> list[str]:
    """The key index beside PHP Address Book: a side table, the number rules as an SQL
    function, and triggers that keep the index current on every INSERT, UPDATE and
    DELETE the web UI makes. PHP Address Book's own tables only gain an index.

    The index counts references per (key, domain, entry id): an edit with history
    stamps the old row deprecated and inserts a new one with the same id, in either
    order; counting makes every order end right.

    A trigger never fails PHP Address Book's statement: the app stamps the old row
    deprecated before it inserts the new one, so a refused INSERT would leave the entry
    with no live row at all. Whatever goes wrong inside (side table or routine dropped,
    a value the index cannot hold), the trigger's handler counts it in vipsticky_meta
    (trigger_failures) and lets the write through; `vipsticky vip sync` repairs the index.
    Errors no handler can catch: 1449 (the definer account is gone, raised before the
    trigger runs), deadlocks and lock wait timeouts (MariaDB rolls the statement back)."""
    names = addressbook_tables(vip)
    ab = names["addressbook"]
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
    # Linear in the input: every kind of white space number_keys strips is made a space, so
    # LTRIM and RTRIM measure the surrounding run; the text left is refused when longer than
    # 64 characters before any regular expression sees it (one regular expression over the
    # whole value took 28 s on 60,000 characters with a run of inner spaces). Not TRIM():
    # on a multi-byte character set it is quadratic in the trailing run (5 s on 60,000).
    spaced = "raw"
    for char in SURROUNDING_WHITESPACE.replace(" ", ""):
        spaced = "REPLACE(%s, CHAR(%d USING utf8mb4), ' ')" % (spaced, ord(char))
    function = (
        "CREATE FUNCTION vipsticky_number_key(raw %(text)s) "
        "RETURNS VARCHAR(15) CHARACTER SET ascii DETERMINISTIC NO SQL "
        "COMMENT 'vipsticky: number_keys.number_key() in SQL, plan %(plan)s' "
        "BEGIN "
        "DECLARE spaced %(text)s; DECLARE n INT; "
        "DECLARE t VARCHAR(64) CHARACTER SET utf8mb4; DECLARE d VARCHAR(64) CHARACTER SET utf8mb4; "
        "IF raw IS NULL THEN RETURN NULL; END IF; "
        "SET spaced = %(spaced)s; SET n = CHAR_LENGTH(RTRIM(LTRIM(spaced))); "
        "IF n > 64 THEN RETURN NULL; END IF; "
        "SET t = SUBSTRING(raw, CHAR_LENGTH(spaced) - CHAR_LENGTH(LTRIM(spaced)) + 1, n); "
        "IF t NOT REGEXP '^[+]?[0-9 ().-]*$' THEN RETURN NULL; END IF; "
        "SET d = REGEXP_REPLACE(t, '[^0-9]', ''); SET n = CHAR_LENGTH(d); "
        "IF LEFT(t, 1) = '+' THEN RETURN IF(n BETWEEN 8 AND 15, d, NULL); END IF; "
        "%(rules)s RETURN NULL; END" % {"text": TEXT, "plan": plan_signature(plan), "spaced": spaced,
                                        "rules": " ".join(rules)})
    apply = (
        "CREATE PROCEDURE vipsticky_ab_apply(delta INT, entry_id INT, entry_domain INT, "
        "entry_label VARCHAR(255) CHARACTER SET utf8mb4, {phones}) MODIFIES SQL DATA "
        "BEGIN DECLARE i INT DEFAULT 1; DECLARE k VARCHAR(15) CHARACTER SET utf8mb4; "
        "WHILE i <= 5 DO "
        "SET k = vipsticky_number_key(ELT(i, {columns})); "
        "IF k IS NOT NULL THEN "
        "IF delta > 0 THEN "
        "INSERT INTO {keys} (number_key, domain_id, ab_id, refs, label) VALUES (k, entry_domain, entry_id, 1, "
        "entry_label) ON DUPLICATE KEY UPDATE refs = refs + 1, label = VALUES(label); "
        "ELSE "
        "UPDATE {keys} SET refs = refs - 1 WHERE number_key = k AND domain_id = entry_domain AND ab_id = entry_id; "
        "DELETE FROM {keys} WHERE number_key = k AND domain_id = entry_domain AND ab_id = entry_id AND refs <= 0; "
        "END IF; END IF; SET i = i + 1; END WHILE; END".format(
            keys=AB_KEYS, columns=", ".join(PHONE_COLUMNS),
            phones=", ".join("%s %s" % (column, TEXT) for column in PHONE_COLUMNS)))

    def call(delta, row):
        return ("CALL vipsticky_ab_apply({d}, {r}.id, {r}.domain_id, {label}, {phones})".format(
            d=delta, r=row, label=LABEL % {"r": row}, phones=", ".join("%s.%s" % (row, c) for c in PHONE_COLUMNS)))

    def apply_if_live(delta, row):
        return "IF %s THEN %s; END IF;" % (LIVE % {"t": row}, call(delta, row))

    # The handler runs instead of failing the statement: it notes the error (ignoring
    # any error of its own, vipsticky_meta may be gone too) and the trigger goes on.
    swallow = (
        "DECLARE code INT; DECLARE message VARCHAR(255) CHARACTER SET utf8mb4; "
        "DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN "
        "GET DIAGNOSTICS CONDITION 1 code = MYSQL_ERRNO, message = MESSAGE_TEXT; "
        "BEGIN DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END; "
        "INSERT INTO vipsticky_meta (name, value) VALUES ('{failures}', '1') "
        "ON DUPLICATE KEY UPDATE value = value + 1; "
        "INSERT INTO vipsticky_meta (name, value) VALUES ('{last}', "
        "LEFT(CONCAT(NOW(), ' error ', code, ': ', message), 255)) ON DUPLICATE KEY UPDATE value = VALUES(value); "
        "END; END;".format(failures=FAILURES, last=LAST_FAILURE))
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
        ("INSERT", apply_if_live(1, "NEW")),
        ("UPDATE", apply_if_live(-1, "OLD") + " " + apply_if_live(1, "NEW")),
        ("DELETE", apply_if_live(-1, "OLD")),
    ):
        trigger = trigger_names(vip)[event]
        statements.append("DROP TRIGGER IF EXISTS %s" % trigger)
        statements.append("CREATE TRIGGER %s AFTER %s ON %s FOR EACH ROW BEGIN %s %s END"
                          % (trigger, event, ab, swallow, body))
    # The group join looks entries up by id: give it an index if PHP Address Book has none.
    statements.append("CREATE INDEX IF NOT EXISTS %s ON %s (id, domain_id)" % (GROUP_INDEX, names["address_in_groups"]))
    return statements
