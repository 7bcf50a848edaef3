"""PHP Address Book as a VIP source: the number rules as an SQL function, triggers and their side table.

PHP Address Book's own tables only gain triggers and one index; the keys live in
vipsticky's side table (database.AB_KEYS), which the per-call lookup reads.
"""
from __future__ import annotations

from .config import Config, NumberPlan, VipSettings
from .database import AB_KEYS, LIVE, Database, DatabaseError, addressbook_tables

PHONE_COLUMNS = ("home", "mobile", "work", "fax", "phone2")
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
    for sql in statements(config.numbers, config.vip):
        database.run(sql)
    database.run(database.dialect.upsert("vipsticky_meta", ("name", "value"), ("name",)),
                 ("number_plan", plan_signature(config.numbers)))
    count = sync(database, config.vip)
    return ["address-book triggers on %s installed; %d number keys indexed" % (names["addressbook"], count)]



def sync(database: Database, vip: VipSettings) -> int:
    """Rebuild the address-book key index from the address book (MySQL only)."""
    names = addressbook_tables(vip)
    work = [("DELETE FROM %s" % AB_KEYS, ())]
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


def installed_number_plan(database: Database) -> str | None:
    row = database.run("SELECT value FROM vipsticky_meta WHERE name = 'number_plan'", fetch="one")
    return row[0] if row else None


def statements(plan: NumberPlan, vip: VipSettings) -> list[str]:
    """The key index beside PHP Address Book: a side table, the number rules as an SQL
    function, and triggers that keep the index current on every INSERT, UPDATE and
    DELETE the web UI makes. PHP Address Book's own tables only gain an index.

    The index counts references per (key, domain, entry id): an edit with history
    stamps the old row deprecated and inserts a new one with the same id, in either
    order; counting makes every order end right."""
    names = addressbook_tables(vip)
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
                "{r}.fax, {r}.phone2)".format(d=delta, r=row, label=LABEL % {"r": row}))

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
        trigger = trigger_names(vip)[event]
        statements.append("DROP TRIGGER IF EXISTS %s" % trigger)
        statements.append("CREATE TRIGGER %s AFTER %s ON %s FOR EACH ROW %s" % (trigger, event, ab, body))
    # The group join looks entries up by id: give it an index if PHP Address Book has none.
    statements.append("CREATE INDEX IF NOT EXISTS vipsticky_entry ON %s (id, domain_id)"
                      % names["address_in_groups"])
    return statements
