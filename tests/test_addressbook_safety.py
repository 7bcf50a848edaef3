"""vipsticky's triggers never fail PHP Address Book's own writes, and no contact is lost
(issue 9, attack 4). MariaDB only.

Every write is PHP Address Book's own statement sequence (tests/addressbook_ddl.py) in the
app's own session (SET NAMES utf8, its non-strict sql_mode), each statement on its own
with its error ignored, as PHP ignores it: an edit stamps the old row deprecated, then
inserts the new row with the same id, so a trigger that refuses that INSERT leaves the
entry with no live row. The databases default to latin1, as an old MariaDB's did: a
routine parameter that names no character set takes that default.

After every web action: PHP saw no error, the entry has exactly one live row (none once
deleted), and where the trigger worked a call from each of its numbers gets its label.
"""
import json
import os
import time
import uuid

import pymysql
import pytest

import addressbook_ddl as ddl
from agi_scripts import addressbook
from agi_scripts.database import AB_KEYS, Database
from agi_scripts.number_keys import number_key
from utils import SERVER_URL, Setup, install_into, server_connection, server_params, vipsticky

ADDRESSBOOK = "[vip]\nsource = addressbook\n"
LONG = 60000
SECONDS_PER_WRITE = 1.0  # generous: the linear function needs a few milliseconds
# Long phone fields: the shape that took the old function 28 s (a run of inner spaces), a
# real number padded with every kind of white space, and multi-byte text before a long
# trailing run (TRIM() alone is quadratic there).
INNER_SPACES = "8" + " " * (LONG - 2) + "1"
PADDED = " \t" * (LONG // 4) + "8 (913) 075-15-80" + "\r\n" * (LONG // 4)
MULTIBYTE_TRAIL = "Ж" * 1000 + " " * (LONG - 1000)


def admin(statement):
    connection = server_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall()
    finally:
        connection.close()


class App:
    """PHP Address Book in its own session, writing as include/address.class.php does."""

    def __init__(self, setup, variant, names="utf8", **login):
        self.variant = variant
        self.connection = pymysql.connect(**server_params(database=setup.mysql_database, charset=names, **login))
        self.sql("SET NAMES " + names)
        self.sql("SET SESSION sql_mode = %s", (ddl.SQL_MODE_PHP,))
        self.statements = ddl.edit_statements(variant)
        # Two stamps of one entry in one second collide on the classic primary key.
        self.clock = int(time.time())
        self.errors = []  # (action, MySQL error, message): what PHP would have ignored
        self.writes = []  # (action, seconds) of every statement that writes

    def sql(self, statement, args=None):
        with self.connection.cursor() as cursor:
            cursor.execute(statement, args)
            return cursor.fetchall()

    def act(self, action, values):
        """One web action: its statements in order; after an error the next one runs anyway."""
        self.clock += 1
        self.sql("SET timestamp = %s", (self.clock,))
        rows = None
        for statement, names in self.statements[action]:
            started = time.perf_counter()
            try:
                rows = self.sql(statement, ddl.params(names, values))
            except pymysql.MySQLError as error:
                self.errors.append((action, error.args[0], str(error.args[-1])[:150]))
            if not statement.startswith("SELECT"):
                self.writes.append((action, time.perf_counter() - started))
        return rows

    def add(self, **values):
        rows = self.act("add", values)
        return rows[0][0] if rows else None

    def edit(self, entry, **values):
        self.act("edit", dict(values, id=entry))

    def delete(self, entry):
        self.act("delete", {"id": entry})

    def live(self, entry):
        """The entry's live rows: (firstname, lastname, home, mobile, work, fax, phone2)."""
        return self.sql("SELECT firstname, lastname, home, mobile, work, fax, phone2 FROM addressbook "
                        "WHERE id = %s AND (deprecated IS NULL OR deprecated < '1001-01-01')", (entry,))

    def close(self):
        self.connection.close()


@pytest.fixture
def book(request, tmp_path_factory):
    """book(variant='current', charset='latin1', names='utf8', tables=None) -> (setup, app):
    a fresh database of that default character set holding PHP Address Book's tables
    (converted to `tables` if given), vipsticky's schema and triggers installed."""
    def make(variant="current", charset="latin1", names="utf8", tables=None):
        name = "vs_ab_%s" % uuid.uuid4().hex[:12]
        admin("CREATE DATABASE %s CHARACTER SET %s" % (name, charset))
        request.addfinalizer(lambda: admin("DROP DATABASE IF EXISTS %s" % name))
        path = str(tmp_path_factory.mktemp("addressbook") / "vipsticky.conf")
        setup = Setup(dialect="mariadb", url="%s/%s" % (SERVER_URL.rsplit("/", 1)[0], name), path=path,
                      env=dict(os.environ, VIPSTICKY_CONFIG=path), mysql_database=name)
        setup.rewrite(ADDRESSBOOK)
        app = App(setup, variant, names)
        request.addfinalizer(app.close)
        for statement in ddl.ddl(variant) + ddl.month_lookup():
            app.sql(statement)
        if tables:
            app.sql("ALTER TABLE addressbook CONVERT TO CHARACTER SET %s" % tables)
        install_into(setup.config, addressbook=True)
        return setup, app
    return make


def label_of(setup, number):
    """The VIP label a call from number gets, or None: the lookup vip_or_not makes."""
    config = setup.config
    database = Database(config.database)
    try:
        found = database.vip_lookup(number_key(number, config.numbers), config.vip)
    finally:
        database.close()
    return None if found is None else found[1]


def check(setup, app, entry, label, numbers=(), gone=()):
    """After one web action: no error, one live row (none when label is None), each of
    numbers gets label, each of gone gets nothing."""
    assert (app.errors, len(app.live(entry))) == ([], 0 if label is None else 1)
    for number in numbers:
        assert label_of(setup, number) == label, number
    for number in gone:
        assert label_of(setup, number) is None, number


def url_as(setup, user, password):
    """setup's database url with another account."""
    return "mysql://%s:%s@%s" % (user, password, setup.url.split("@", 1)[1])


def sql_keys(setup, values):
    """vipsticky_number_key of each value, and the seconds each took."""
    database = Database(setup.config.database)
    keys, seconds = [], []
    try:
        for value in values:
            started = time.perf_counter()
            keys.append(addressbook.sql_number_key(database, value))
            seconds.append(time.perf_counter() - started)
    finally:
        database.close()
    return keys, seconds


def failures(setup):
    database = Database(setup.config.database)
    try:
        return addressbook.trigger_failures(database)
    finally:
        database.close()


def assert_index_is_what_sync_builds(setup):
    """The triggers kept the index exactly as a rebuild from the address book makes it."""
    by_triggers = setup.query("SELECT * FROM %s ORDER BY number_key, domain_id, ab_id" % AB_KEYS)[0]
    assert failures(setup) is None
    database = Database(setup.config.database)
    try:
        addressbook.sync(database, setup.config.vip)
    finally:
        database.close()
    assert setup.query("SELECT * FROM %s ORDER BY number_key, domain_id, ab_id" % AB_KEYS)[0] == by_triggers


VARIANTS = pytest.mark.parametrize("variant", ["classic", "current"])


@VARIANTS
def test_cyrillic_names_in_a_latin1_database(book, variant):
    """Old code: every add, edit or delete of a Cyrillic name failed with 1366 inside the
    trigger, and renaming a contact to a Cyrillic name made it vanish."""
    setup, app = book(variant)
    ivan = app.add(firstname="Ivan", lastname="Petrov", mobile="8 (913) 075-15-80")
    check(setup, app, ivan, "Ivan Petrov", ["+79130751580"])
    app.edit(ivan, firstname="Иван", lastname="Петров", mobile="8 (913) 075-15-80")  # the rename
    check(setup, app, ivan, "Иван Петров", ["89130751580"])
    app.edit(ivan, firstname="Иван", lastname="Петров-Водкин", mobile="+7 913 111-22-33")
    check(setup, app, ivan, "Иван Петров-Водкин", ["89131112233"], gone=["89130751580"])
    olga = app.add(firstname="Ольга", lastname="Смирнова", work="(3843) 12-34-56")
    check(setup, app, olga, "Ольга Смирнова", ["83843123456"])
    app.delete(ivan)
    check(setup, app, ivan, None, gone=["89131112233", "89130751580"])
    check(setup, app, olga, "Ольга Смирнова", ["123456"])
    answer = vipsticky(setup, "lookup", "83843123456", "--json")  # the installed command, as an admin runs it
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["label"] == "Ольга Смирнова"
    assert_index_is_what_sync_builds(setup)


@pytest.mark.parametrize("variant, charset", [("classic", "utf8mb4"), ("current", "latin1")])
def test_60000_character_phone_fields(book, variant, charset):
    """Old code: the number function ran a regular expression over the whole value; one
    insert with a 60,000-character field took about 28 s of server time per such field
    (in a latin1 database the multi-byte field failed with 1366 even before that)."""
    setup, app = book(variant, charset)
    entry = app.add(firstname="Long", lastname="Fields", home=INNER_SPACES, mobile=PADDED, work=MULTIBYTE_TRAIL)
    check(setup, app, entry, "Long Fields", ["89130751580"])
    app.edit(entry, firstname="Long", lastname="Edited", home=PADDED, mobile=MULTIBYTE_TRAIL, fax=INNER_SPACES)
    check(setup, app, entry, "Long Edited", ["+79130751580"])
    app.delete(entry)
    check(setup, app, entry, None, gone=["89130751580"])
    print("\n%s: %s" % (variant, ", ".join("%s %.3f s" % write for write in app.writes)))
    slow = [write for write in app.writes if write[1] >= SECONDS_PER_WRITE]
    assert slow == [], "writes slower than %.1f s: %s" % (SECONDS_PER_WRITE, slow)
    assert_index_is_what_sync_builds(setup)


def test_long_values_sql_agrees_with_python_in_linear_time(book):
    """The SQL function equals number_keys on long values too, and takes milliseconds."""
    setup, _ = book()
    values = [INNER_SPACES, PADDED, MULTIBYTE_TRAIL, " " * LONG, "1" * LONG, "x" + "\t" * LONG + "x",
              "Ж" + " \n" * (LONG // 2) + "Ж", "😀" * (LONG // 4), "\x00" * LONG, "\x0b" * LONG + "+380441234567",
              " " * LONG + "9" * 64 + " " * LONG, " " * LONG + "9" * 65, "\f" * LONG + "(3843) 12-34-56",
              " " * LONG + "+7 913 075 15 80" + "\x0b" * LONG]
    keys, timings = sql_keys(setup, values)
    assert keys == [number_key(value, setup.config.numbers) for value in values]
    assert keys.count(None) < len(keys) - 3
    print("\nvipsticky_number_key on %d values of %d to %d characters: slowest %.4f s" % (
        len(values), min(map(len, values)), max(map(len, values)), max(timings)))
    assert max(timings) < SECONDS_PER_WRITE


def test_control_and_bidi_characters(book):
    """Old code, latin1 database: a bidi override or a line separator (not in latin1) in a
    name or a phone failed the write with 1366."""
    setup, app = book()
    first, last = "Iv\x00an\x1b[31m\u202e", "\u2028Pet\u0085rov\x07"
    phones = dict(home="\x0b8 (913) 075-15-80\x0c", mobile="89130751581\x00", work="\u20288913075158",
                  fax="\x1b[2J89130751583", phone2="\u200e89130751584")
    entry = app.add(firstname=first, lastname=last, **phones)
    check(setup, app, entry, "%s %s" % (first, last), ["89130751580"], gone=["89130751581", "89130751583"])
    assert sql_keys(setup, phones.values())[0] == [number_key(value, setup.config.numbers) for value in phones.values()]
    app.edit(entry, firstname="\u202eOlga\t", lastname="\r\nSmirnova", work="(3843)\u00a012-34-56",
             mobile="\t83843123457\r\n")
    check(setup, app, entry, "\u202eOlga\t \r\nSmirnova", ["83843123457"], gone=["89130751580", "83843123456"])
    app.delete(entry)
    check(setup, app, entry, None, gone=["83843123457"])
    assert_index_is_what_sync_builds(setup)


@pytest.mark.parametrize("tables", [None, "utf8mb4"], ids=["shipped-utf8-tables", "utf8mb4-tables"])
def test_emoji(book, tables):
    """The shipped utf8 (utf8mb3) tables store an emoji as '????' in the app's non-strict
    session; tables converted to utf8mb4 keep it. Old code, latin1 database: with utf8mb4
    tables every write of an emoji failed with 1366."""
    setup, app = book(names=tables or "utf8", tables=tables)
    name = ("Taxi \U0001f695", "Plus \U0001f600")
    stored = name if tables else ("Taxi ????", "Plus ????")  # one '?' a byte
    entry = app.add(firstname=name[0], lastname=name[1], mobile="\U0001f695 89130751580", work="89130751584")
    check(setup, app, entry, "%s %s" % stored, ["89130751584"], gone=["89130751580"])
    assert app.live(entry)[0][:2] == stored
    app.edit(entry, firstname="\U0001f600", lastname="", work="89130751585")
    check(setup, app, entry, "\U0001f600" if tables else "????", ["89130751585"], gone=["89130751584"])
    app.delete(entry)
    check(setup, app, entry, None, gone=["89130751585"])
    assert_index_is_what_sync_builds(setup)


@pytest.mark.parametrize("variant, dropped", [
    ("classic", "TABLE " + AB_KEYS), ("current", "TABLE " + AB_KEYS),
    ("current", "PROCEDURE vipsticky_ab_apply"), ("current", "FUNCTION vipsticky_number_key"),
])
def test_dropped_side_table_or_routine(book, variant, dropped):
    """Old code: with the side table dropped every add and edit failed (1146; 1305 for a
    routine), and an edit left the entry with no live row. Now the writes go through, the
    triggers count what they swallowed, and install-schema --addressbook repairs the index."""
    setup, app = book(variant)
    before = app.add(firstname="Before", lastname="Drop", mobile="89130000001")
    check(setup, app, before, "Before Drop", ["89130000001"])
    admin("DROP %s IF EXISTS %s.%s" % (dropped.split()[0], setup.mysql_database, dropped.split()[1]))
    after = app.add(firstname="After", lastname="Drop", mobile="89130000002")
    app.edit(before, firstname="Before", lastname="Renamed", mobile="89130000003")
    app.edit(after, firstname="After", lastname="Renamed", mobile="89130000004")
    app.delete(before)
    assert app.errors == []
    assert app.live(before) == ()
    assert [row[:2] + row[3:4] for row in app.live(after)] == [("After", "Renamed", "89130000004")]
    count, last = failures(setup)
    assert count == 6, (count, last)  # one a failed CALL: the add 1, each edit 2 (stamp, insert), the delete 1
    assert (" error 1146: " if dropped.startswith("TABLE") else " error 1305: ") in last, last

    repaired = vipsticky(setup, "install-schema", "--addressbook")
    assert repaired.returncode == 0, repaired.stderr
    assert failures(setup) is None
    for number, label in (("89130000001", None), ("89130000002", None), ("89130000003", None),
                          ("89130000004", "After Renamed")):
        assert label_of(setup, number) == label, number
    assert_index_is_what_sync_builds(setup)


# -- the definer ---------------------------------------------------------------------------
# The narrowest grants for a dedicated account that installs (and so owns) the triggers and
# routines, as README tells an admin; {db} is PHP Address Book's database, {account} the account.
OWNER_GRANTS = (
    "GRANT CREATE ROUTINE, ALTER ROUTINE, EXECUTE ON {db}.* TO {account}",
    "GRANT SELECT, TRIGGER ON {db}.addressbook TO {account}",
    "GRANT SELECT ON {db}.group_list TO {account}",
    "GRANT SELECT, INDEX ON {db}.address_in_groups TO {account}",
) + tuple("GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON {db}.%s TO {account}" % table
          for table in ("vipsticky_meta", AB_KEYS, "vip_numbers", "numbers_remember", "vipsticky_events"))


@pytest.fixture
def accounts(request):
    """accounts(*grants) -> (name, password, account) of a new account with those grants
    ({account} in them stands for it), dropped at the end."""
    host = admin("SELECT SUBSTRING_INDEX(USER(), '@', -1)")[0][0]

    def make(*grants, **names):
        name, password = "vs_%s" % uuid.uuid4().hex[:10], uuid.uuid4().hex
        account = "'%s'@'%s'" % (name, host)
        admin("CREATE USER %s IDENTIFIED BY '%s'" % (account, password))
        request.addfinalizer(lambda: admin("DROP USER IF EXISTS %s" % account))
        for grant in grants:
            admin(grant.format(account=account, **names))
        return name, password, account
    return make


def test_dedicated_definer_account(book, accounts, tmp_path):
    """Installed by a dedicated account with only OWNER_GRANTS, the triggers run as it for an
    app account that has no right on vipsticky's tables, also once the account is locked.
    Dropped, every PHP Address Book write fails with 1449 (no handler can catch it: it is
    raised before the trigger runs); the edit's two statements both fail, so the entry keeps
    its old live row; installing again as an existing account repairs it."""
    setup, _ = book()
    db = setup.mysql_database
    owner, owner_password, owner_account = accounts(*OWNER_GRANTS, db=db)
    php, php_password, _ = accounts("GRANT SELECT, INSERT, UPDATE, DELETE ON {db}.addressbook TO {account}",
                                    "GRANT SELECT ON {db}.month_lookup TO {account}", db=db)
    owner_config = str(tmp_path / "owner.conf")
    with open(owner_config, "w") as handle:
        handle.write("[database]\nurl = %s\n%s" % (url_as(setup, owner, owner_password), ADDRESSBOOK))
    installed = vipsticky(setup, "--config", owner_config, "install-schema", "--addressbook")
    assert installed.returncode == 0, installed.stderr
    definers = setup.query(
        "SELECT DISTINCT definer FROM information_schema.triggers WHERE trigger_schema = DATABASE()",
        "SELECT DISTINCT definer, security_type FROM information_schema.routines WHERE routine_schema = DATABASE()")
    user, host = owner_account.replace("'", "").split("@")
    assert definers[:2] == ((("%s@%s" % (user, host),),), (("%s@%s" % (user, host), "DEFINER"),))

    app = App(setup, "current", user=php, password=php_password)
    try:
        entry = app.add(firstname="Иван", lastname="Owner", mobile="89130000001")
        check(setup, app, entry, "Иван Owner", ["89130000001"])
        admin("ALTER USER %s ACCOUNT LOCK" % owner_account)  # nobody logs in as it; it still runs the triggers
        app.edit(entry, firstname="Иван", lastname="Locked", mobile="89130000002")
        check(setup, app, entry, "Иван Locked", ["89130000002"])

        admin("DROP USER %s" % owner_account)
        assert app.add(firstname="New", lastname="Entry", mobile="89130000003") == entry  # nothing added
        app.edit(entry, firstname="Иван", lastname="Dropped", mobile="89130000004")
        assert {(action, code) for action, code, _ in app.errors} == {("add", 1449), ("edit", 1449)}
        assert [row[1] for row in app.live(entry)] == ["Locked"]  # the edit is not saved, nothing is lost
        print("\nwith the definer dropped: %s" % app.errors[0][2])

        again = vipsticky(setup, "install-schema", "--addressbook")  # as the runtime account (root here)
        assert again.returncode == 0, again.stderr
        app.errors = []
        app.edit(entry, firstname="Иван", lastname="Reinstalled", mobile="89130000004")
        check(setup, app, entry, "Иван Reinstalled", ["89130000004"], gone=["89130000002"])
    finally:
        app.close()
