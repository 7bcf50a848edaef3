"""PHP Address Book as a VIP source (MariaDB only).

The address book's tables are the real DDL of its three schema variants and every
write is the exact statement its PHP code runs (tests/addressbook_ddl.py), under its
non-strict sql_mode. vip_or_not runs over the AGI protocol right after each write: no
sync in between, the triggers must have done the work.
"""
import json
import random
import re
import time

import pymysql
import pytest
from click.testing import CliRunner

import addressbook_ddl as ddl
from agi_scripts.addressbook import AB_KEYS
from agi_scripts.cli import cli
from agi_scripts.database import KEY, vip_query
from agi_scripts.number_keys import number_key
from utils import PLAN, check_vip_call, install_into, one_line, vip_of, vipsticky

ADDRESSBOOK = "[vip]\nsource = addressbook\n"
GROUPS = "[vip]\nsource = addressbook\ngroups = Gold:20, Silver:15\n"
NOT_VIP = ("5", "0", "")
PHP_TABLES = ("addressbook", "group_list", "address_in_groups", "month_lookup")


class AddressBook:
    """PHP Address Book writing to its tables as include/address.class.php does."""

    def __init__(self, setup, variant, prefix=""):
        self.variant = variant
        self.prefix = prefix
        self.connection = setup.connection()
        self.execute("SET SESSION sql_mode = %s", (ddl.SQL_MODE_PHP,))
        self.statements = ddl.edit_statements(variant, prefix)
        # PHP stamps deprecated = now(); two stamps of one entry in one second collide on
        # the classic primary key, so every web action gets its own second.
        self.clock = int(time.time())

    def execute(self, sql, args=None):
        with self.connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()

    def create_tables(self):
        for sql in ddl.ddl(self.variant, self.prefix) + ddl.month_lookup(self.prefix):
            self.execute(sql)

    def _tick(self):
        self.clock += 1
        self.execute("SET timestamp = %s", (self.clock,))

    def _run(self, name, values):
        rows = None
        for sql, names in self.statements[name]:
            rows = self.execute(sql, ddl.params(names, values))
        return rows

    def add(self, domain_id=0, **values):
        """edit.php "submit" -> saveAddress(): returns the new entry's id."""
        self._tick()
        return int(self._run("add", dict(values, domain_id=domain_id))[0][0])

    def edit(self, entry_id, domain_id=0, **values):
        """edit.php "update" -> updateAddress(): the whole entry is posted again."""
        assert len(self._run("precheck", {"id": entry_id, "domain_id": domain_id})) == 1
        self._tick()
        self._run("edit", dict(values, id=entry_id, domain_id=domain_id))

    def delete(self, entry_id, domain_id=0):
        """delete.php -> deleteAddresses() with history on (the shipped default)."""
        assert len(self._run("precheck", {"id": entry_id, "domain_id": domain_id})) == 1
        self._tick()
        self._run("delete", {"id": entry_id, "domain_id": domain_id})

    def delete_without_history(self, entry_id, domain_id=0):
        """deleteAddresses() with $keep_history = false."""
        self.execute("DELETE FROM %saddress_in_groups WHERE id = %%s AND domain_id = %%s" % self.prefix,
                     (entry_id, domain_id))
        self.execute("DELETE FROM %saddressbook WHERE id = %%s AND domain_id = %%s" % self.prefix,
                     (entry_id, domain_id))

    def add_group(self, name, domain_id=0):
        self._tick()
        with self.connection.cursor() as cursor:
            cursor.execute("INSERT INTO %sgroup_list (domain_id, group_name, group_header, group_footer, created, "
                           "modified) VALUES (%%s, %%s, '', '', now(), now())" % self.prefix, (domain_id, name))
            return cursor.lastrowid

    def join(self, entry_id, group_id, domain_id=0):
        self._tick()
        sql, names = ddl.group_member_statement(self.prefix)
        self.execute(sql, ddl.params(names, {"id": entry_id, "group_id": group_id, "domain_id": domain_id}))

    def leave(self, entry_id, group_id, domain_id=0):
        """group.php "remove from group": the membership row is stamped deprecated."""
        self._tick()
        self.execute("UPDATE %saddress_in_groups SET deprecated = now() WHERE deprecated is null AND id = %%s "
                     "AND group_id = %%s AND domain_id = %%s" % self.prefix, (entry_id, group_id, domain_id))

    def index(self):
        return sorted(self.execute("SELECT number_key, domain_id, ab_id, refs, label FROM %s" % AB_KEYS))

    def count(self, table="addressbook"):
        return self.execute("SELECT COUNT(*) FROM %s%s" % (self.prefix, table))[0][0]

    def close(self):
        self.connection.close()


@pytest.fixture
def book(make_setup):
    """book(variant, extra_ini=ADDRESSBOOK, install=True, prefix='') -> (setup, AddressBook)."""
    opened = []

    def make(variant, extra=ADDRESSBOOK, install=True, prefix=""):
        setup = make_setup("mariadb", extra=extra, install=False)
        php = AddressBook(setup, variant, prefix)
        opened.append(php)
        php.create_tables()
        if install:
            install_addressbook(setup)
        return setup, php
    yield make
    for php in opened:
        php.close()


def install_addressbook(setup):
    return install_into(setup.config, addressbook=True)


def vip(setup, number):
    """(QUEUE_PRIO, VIP, VIP_LABEL) of one call, which must be clean (no VERBOSE, three SETs)."""
    return vip_of(setup, [number])


def expect_vips(setup, expected):
    """vip() of each number is what expected maps it to."""
    for number, outcome in expected.items():
        assert vip(setup, number) == outcome, number


TWO_VARIANTS = pytest.mark.parametrize("variant", ["classic", "current"])


# -- the web UI's writes take effect on the next call -----------------------------------
@TWO_VARIANTS
def test_add_edit_delete(book, variant):
    setup, php = book(variant)
    entry = php.add(firstname="Ivan", lastname="Petrov", mobile="8 (913) 075-15-80", email="ivan@example.org")
    assert vip(setup, "+79130751580") == ("10", "1", "Ivan Petrov")
    assert vip(setup, "9130751580") == ("10", "1", "Ivan Petrov")
    assert vip(setup, "+79131112233") == NOT_VIP

    php.edit(entry, firstname="Иван", lastname="Петров-Водкин", mobile="+7 913 111-22-33")
    assert vip(setup, "89130751580") == NOT_VIP
    assert vip(setup, "89131112233") == ("10", "1", "Иван Петров-Водкин")
    assert php.count() == 2  # history: the old row is kept, stamped

    php.delete(entry)
    assert vip(setup, "89131112233") == NOT_VIP
    assert vip(setup, "89130751580") == NOT_VIP
    assert php.count() == 2
    assert php.index() == []


@TWO_VARIANTS
def test_delete_without_history(book, variant):
    setup, php = book(variant)
    keep = php.add(firstname="Olga", lastname="Ivanova", work="3843-12-34-56")
    gone = php.add(firstname="Petr", lastname="Sidorov", home="+7 913 075 15 80")
    assert vip(setup, "89130751580") == ("10", "1", "Petr Sidorov")
    php.delete_without_history(gone)
    assert vip(setup, "89130751580") == NOT_VIP
    assert vip(setup, "123456") == ("10", "1", "Olga Ivanova")
    assert [row[2] for row in php.index()] == [keep]


def test_interim_add_and_deprecate(book):
    """Interim schema (live = '1000-01-01'): the real app cannot edit or delete there,
    so the row is retired by SQL, as an admin would."""
    setup, php = book("interim")
    entry = php.add(firstname="Anna", lastname="Karenina", mobile="8 (913) 075-15-80")
    assert php.execute("SELECT deprecated FROM addressbook WHERE id = %s", (entry,))[0][0].year == 1000
    assert vip(setup, "+79130751580") == ("10", "1", "Anna Karenina")
    php.execute("UPDATE addressbook SET deprecated = now() WHERE id = %s AND deprecated = '1000-01-01 00:00:00'",
                (entry,))
    assert vip(setup, "+79130751580") == NOT_VIP
    assert php.index() == []


def test_label_from_web_form_cannot_inject(book):
    setup, php = book("current")
    php.add(firstname='Ann "Q"\r\nVERBOSE x', lastname="B\\C", mobile="89130751580")
    call = check_vip_call(setup.run("vip_or_not", ["89130751580"]))
    label = call.variables["VIP_LABEL"]
    assert "\r" not in label and "\n" not in label
    assert " ".join(label.split()) == 'Ann "Q" VERBOSE x B\\C'
    assert call.variables["VIP"] == "1"


@TWO_VARIANTS
def test_same_key_twice_is_reference_counted(book, variant):
    setup, php = book(variant)
    entry = php.add(firstname="Ivan", lastname="Petrov", mobile="8 (913) 075-15-80", work="+7 913 075 15 80")
    assert [(key, refs) for key, _, _, refs, _ in php.index()] == [("79130751580", 2)]
    assert vip(setup, "89130751580") == ("10", "1", "Ivan Petrov")
    # the web UI drops one of the two phones
    php.edit(entry, firstname="Ivan", lastname="Petrov", mobile="8 (913) 075-15-80")
    assert vip(setup, "89130751580") == ("10", "1", "Ivan Petrov")
    assert [(key, refs) for key, _, _, refs, _ in php.index()] == [("79130751580", 1)]
    # the same by hand, in place (no history row)
    php.execute("UPDATE addressbook SET work = '9130751580' WHERE id = %s AND (deprecated IS NULL OR "
                "deprecated < '1001-01-01')", (entry,))
    php.execute("UPDATE addressbook SET mobile = '' WHERE id = %s AND (deprecated IS NULL OR "
                "deprecated < '1001-01-01')", (entry,))
    assert vip(setup, "89130751580") == ("10", "1", "Ivan Petrov")
    php.execute("UPDATE addressbook SET work = '' WHERE id = %s AND (deprecated IS NULL OR "
                "deprecated < '1001-01-01')", (entry,))
    assert vip(setup, "89130751580") == NOT_VIP
    # two entries with one number: deleting one keeps the other
    first = php.add(firstname="A", lastname="One", mobile="89130751580")
    php.add(firstname="B", lastname="Two", home="9130751580")
    php.delete(first)
    assert vip(setup, "+79130751580") == ("10", "1", "B Two")


@TWO_VARIANTS
def test_entries_before_install_are_indexed(book, variant):
    setup, php = book(variant, install=False)
    kept = php.add(firstname="Ivan", lastname="Petrov", mobile="8 (913) 075-15-80")
    edited = php.add(firstname="Olga", lastname="Ivanova", work="83843123456")
    php.edit(edited, firstname="Olga", lastname="Ivanova", work="+380 44 123 45 67")
    deleted = php.add(firstname="Gone", lastname="Away", mobile="84951234567")
    php.delete(deleted)
    php.add(company="ACME Ltd", phone2="(3843) 65-43-21", fax="anonymous")
    assert kept and php.count() == 5

    installed = vipsticky(setup, "install-schema", "--addressbook")
    assert installed.returncode == 0, installed.stderr
    assert installed.stderr == ""
    expected = {
        "+79130751580": ("10", "1", "Ivan Petrov"),
        "00380441234567": ("10", "1", "Olga Ivanova"),
        "3843123456": NOT_VIP,
        "84951234567": NOT_VIP,
        "654321": ("10", "1", "ACME Ltd"),
    }
    expect_vips(setup, expected)
    index = php.index()
    assert [key for key, *_ in index] == ["380441234567", "73843654321", "79130751580"]

    again = vipsticky(setup, "install-schema", "--addressbook")  # safe to rerun
    assert again.returncode == 0, again.stderr
    assert php.index() == index
    expect_vips(setup, expected)


@TWO_VARIANTS
def test_vip_sync_rebuilds_the_index(book, variant):
    setup, php = book(variant)
    first = php.add(firstname="Ivan", lastname="Petrov", mobile="8 (913) 075-15-80", work="+79130751580")
    second = php.add(firstname="Olga", lastname="Ivanova", work="83843123456", home="+380441234567")
    php.edit(second, firstname="Olga", lastname="Smirnova", work="83843123456")
    gone = php.add(firstname="Gone", lastname="Away", mobile="84951234567")
    php.delete(gone)
    php.add(domain_id=1, firstname="Other", lastname="Tenant", mobile="89130751580")
    by_triggers = php.index()
    assert len(by_triggers) == 3 and first

    php.execute("DELETE FROM %s" % AB_KEYS)
    assert vip(setup, "89130751580") == NOT_VIP
    synced = vipsticky(setup, "vip", "sync")
    assert synced.returncode == 0, synced.stderr
    assert synced.stderr == ""
    assert "3" in synced.stdout
    assert php.index() == by_triggers  # sync and the triggers build the same index
    assert vip(setup, "89130751580") in (("10", "1", "Ivan Petrov"), ("10", "1", "Other Tenant"))
    assert vip(setup, "123456") == ("10", "1", "Olga Smirnova")
    assert vip(setup, "+380441234567") == NOT_VIP
    assert vip(setup, "84951234567") == NOT_VIP


def test_table_prefix(book):
    """$table_prefix in PHP Address Book's config/cfg.db.php."""
    extra = GROUPS + "addressbook_table_prefix = ab_\n"
    setup, php = book("current", extra=extra, prefix="ab_")
    gold = php.add_group("Gold")
    entry = php.add(firstname="Pre", lastname="Fixed", mobile="8 (913) 075-15-80")
    assert vip(setup, "89130751580") == NOT_VIP  # in no group yet
    php.join(entry, gold)
    assert vip(setup, "89130751580") == ("20", "1", "Pre Fixed")
    php.edit(entry, firstname="Pre", lastname="Edited", mobile="83843123456")
    expect_vips(setup, {"89130751580": NOT_VIP, "123456": ("20", "1", "Pre Edited")})
    php.delete(entry)
    assert vip(setup, "123456") == NOT_VIP


def test_install_without_php_tables_is_one_line(make_setup):
    setup = make_setup("mariadb", extra=ADDRESSBOOK, install=False)
    outcome = vipsticky(setup, "install-schema", "--addressbook")
    assert outcome.returncode == 1
    assert "addressbook" in one_line(outcome.stderr)


def test_number_plan_change_needs_a_rerun(book):
    setup, php = book("current")
    php.add(firstname="Seven", lastname="Digits", work="123-45-67")  # no key with area code 3843
    php.add(firstname="Six", lastname="Digits", work="12-34-56")  # 3843 12-34-56
    assert vip(setup, "84951234567") == NOT_VIP
    assert vip(setup, "83843123456") == ("10", "1", "Six Digits")
    setup.rewrite(ADDRESSBOOK + "[numbers]\narea_code = 495\n")
    rerun = vipsticky(setup, "install-schema", "--addressbook")
    assert rerun.returncode == 0, rerun.stderr
    assert vip(setup, "84951234567") == ("10", "1", "Seven Digits")
    assert vip(setup, "83843123456") == NOT_VIP
    assert [key for key, *_ in php.index()] == ["74951234567"]


def test_vip_sync_brings_function_and_triggers_to_a_changed_plan(book):
    """0.1: `vip sync` re-indexed with the old SQL function, so the index stayed on the old plan."""
    setup, php = book("current")
    php.add(firstname="Seven", lastname="Digits", work="123-45-67")
    setup.rewrite(ADDRESSBOOK + "[numbers]\narea_code = 495\n")
    synced = vipsticky(setup, "vip", "sync")
    assert synced.returncode == 0, synced.stderr
    assert "installed for the number plan cc=7 trunk=8 intl=810,00 national=10 area=495" in synced.stdout
    assert vip(setup, "84951234567") == ("10", "1", "Seven Digits")
    php.add(firstname="New", lastname="Entry", mobile="765-43-21")  # the triggers use the new plan too
    assert vip(setup, "84957654321") == ("10", "1", "New Entry")
    again = vipsticky(setup, "vip", "sync")
    assert again.stdout.splitlines()[0] == "2 address-book number keys indexed"


def test_entries_that_give_no_key_are_listed(book):
    setup, php = book("current", install=False)
    good = php.add(firstname="Ivan", lastname="Petrov", mobile="89130751580")
    noted = php.add(firstname="Olga", lastname="Work", work="9132223344 (work)")
    two = php.add(company="Two Numbers Ltd", home="89131112233, 89134445566")
    php.add(firstname="Empty", lastname="Fields", home="", mobile="   ")
    for command in (["install-schema", "--addressbook"], ["vip", "sync"]):
        result = vipsticky(setup, *command)
        assert result.returncode == 0, result.stderr
        listed = [line for line in result.stdout.splitlines() if "gives no number key" in line]
        assert listed == [
            'entry %d (Olga Work) work = "9132223344 (work)" gives no number key: fix it in PHP Address Book' % noted,
            'entry %d (Two Numbers Ltd) home = "89131112233, 89134445566" gives no number key: '
            'fix it in PHP Address Book' % two], result.stdout
    assert vip(setup, "89130751580") == ("10", "1", "Ivan Petrov") and good


def show_create(php):
    """PHP Address Book's table definitions (the AUTO_INCREMENT counter aside: entries were added)."""
    return {table: re.sub(r" AUTO_INCREMENT=\d+", "", php.execute("SHOW CREATE TABLE %s" % table)[0][1])
            for table in PHP_TABLES}


@TWO_VARIANTS
def test_uninstall_leaves_php_address_book_as_it_was(book, variant):
    setup, php = book(variant, install=False)
    before = show_create(php)
    entry = php.add(firstname="Ivan", lastname="Petrov", mobile="89130751580")
    assert vipsticky(setup, "install-schema", "--addressbook").returncode == 0
    assert show_create(php) != before  # the index on address_in_groups
    removed = vipsticky(setup, "vip", "uninstall-addressbook")
    assert removed.returncode == 0, removed.stderr
    assert show_create(php) == before
    database_objects = php.execute(
        "SELECT 'trigger', trigger_name FROM information_schema.triggers WHERE trigger_schema = DATABASE() "
        "UNION ALL SELECT 'routine', routine_name FROM information_schema.routines WHERE routine_schema = DATABASE() "
        "UNION ALL SELECT 'table', table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
        "AND table_name = %s", (AB_KEYS,))
    assert database_objects == ()
    php.edit(entry, firstname="Ivan", lastname="Still", mobile="89130751580")  # PHP Address Book works on
    assert php.count() >= 1
    assert vipsticky(setup, "vip", "uninstall-addressbook").returncode == 0  # rerun: nothing left, no error


# -- groups, domains, both sources -----------------------------------------------------
@TWO_VARIANTS
def test_groups(book, variant):
    setup, php = book(variant, extra=GROUPS)
    gold, silver, bronze = php.add_group("Gold"), php.add_group("Silver"), php.add_group("Bronze")
    golden = php.add(firstname="G", lastname="Gold", mobile="89130000001")
    both = php.add(firstname="B", lastname="Both", mobile="89130000002")
    silvery = php.add(firstname="S", lastname="Silver", mobile="89130000003")
    bronzed = php.add(firstname="R", lastname="Bronze", mobile="89130000004")
    php.add(firstname="N", lastname="None", mobile="89130000005")
    php.join(golden, gold)
    php.join(both, silver)
    php.join(both, gold)
    php.join(silvery, silver)
    php.join(bronzed, bronze)
    expect_vips(setup, {"+79130000001": ("20", "1", "G Gold"), "+79130000002": ("20", "1", "B Both"),
                        "+79130000003": ("15", "1", "S Silver"), "+79130000004": NOT_VIP, "+79130000005": NOT_VIP})

    php.leave(both, gold)
    assert vip(setup, "+79130000002") == ("15", "1", "B Both")
    php.leave(golden, gold)
    assert vip(setup, "+79130000001") == NOT_VIP
    # an edit keeps the memberships (they hang on the id)
    php.edit(silvery, firstname="S", lastname="Silver", mobile="89130000033")
    expect_vips(setup, {"+79130000003": NOT_VIP, "+79130000033": ("15", "1", "S Silver")})
    # deleting the entry stamps its memberships too
    php.delete(both)
    assert vip(setup, "+79130000002") == NOT_VIP


def test_group_in_other_domain_does_not_count(book):
    setup, php = book("current", extra=GROUPS)
    gold_elsewhere = php.add_group("Gold", domain_id=1)
    entry = php.add(firstname="X", lastname="Y", mobile="89130000001")
    php.join(entry, gold_elsewhere)  # a membership row in domain 0 pointing at domain 1's group
    assert vip(setup, "89130000001") == NOT_VIP
    gold = php.add_group("Gold")
    php.join(entry, gold)
    assert vip(setup, "89130000001") == ("20", "1", "X Y")
    php.execute("UPDATE group_list SET deprecated = now() WHERE group_id = %s", (gold,))  # group deleted
    assert vip(setup, "89130000001") == NOT_VIP


def test_addressbook_domain_id(book):
    setup, php = book("current", extra=ADDRESSBOOK + "addressbook_domain_id = 0\n")
    php.add(domain_id=1, firstname="Other", lastname="Tenant", mobile="89130751580")
    php.add(domain_id=0, firstname="Our", lastname="Client", mobile="83843123456")
    assert vip(setup, "89130751580") == NOT_VIP
    assert vip(setup, "83843123456") == ("10", "1", "Our Client")
    setup.rewrite(ADDRESSBOOK + "addressbook_domain_id = 1\n")
    assert vip(setup, "89130751580") == ("10", "1", "Other Tenant")
    assert vip(setup, "83843123456") == NOT_VIP
    setup.rewrite(ADDRESSBOOK)  # no domain configured: every tenant
    assert vip(setup, "89130751580") == ("10", "1", "Other Tenant")
    assert vip(setup, "83843123456") == ("10", "1", "Our Client")


def test_source_both_highest_priority_wins(book):
    setup, php = book("current", extra="[vip]\nsource = both\npriority = 10\n")
    php.add(firstname="Book", lastname="High", mobile="89130000001")
    php.add(firstname="Book", lastname="Low", mobile="89130000002")
    php.add(firstname="Book", lastname="Only", mobile="89130000003")
    database = setup.database()
    database.vip_add("79130000001", 3, "Table low")
    database.vip_add("79130000002", 30, "Table high")
    database.vip_add("79130000004", 12, "Table only")
    database.close()
    expected = {
        "89130000001": ("10", "1", "Book High", "addressbook"),
        "89130000002": ("30", "1", "Table high", "table"),
        "89130000003": ("10", "1", "Book Only", "addressbook"),
        "89130000004": ("12", "1", "Table only", "table"),
        "89130000005": ("5", "0", "", None),
    }
    runner = CliRunner()
    for number, (priority, flag, label, source) in expected.items():
        assert vip(setup, number) == (priority, flag, label), number
        outcome = runner.invoke(cli, ["--config", setup.path, "lookup", "--json", number])
        assert outcome.exit_code == 0, outcome.output
        answer = json.loads(outcome.stdout)
        assert (str(answer["priority"]), answer["label"], answer["source"]) == (priority, label, source)


def test_source_both_with_groups(book):
    setup, php = book("classic", extra="[vip]\nsource = both\ngroups = Gold:20, Silver:15\n")
    silver = php.add_group("Silver")
    member = php.add(firstname="In", lastname="Silver", mobile="89130000001")
    php.add(firstname="No", lastname="Group", mobile="89130000002")
    php.join(member, silver)
    database = setup.database()
    database.vip_add("79130000001", 12, "Table twelve")
    database.vip_add("79130000002", 11, "Table eleven")
    database.close()
    assert vip(setup, "89130000001") == ("15", "1", "In Silver")
    assert vip(setup, "89130000002") == ("11", "1", "Table eleven")  # in no listed group: the table decides
    php.leave(member, silver)
    assert vip(setup, "89130000001") == ("12", "1", "Table twelve")


# -- the lookup is an index lookup ------------------------------------------------------
def populate(php, entries=2000, seed=7):
    """entries rows written in bulk, 16 groups in two domains, two memberships per entry."""
    rng = random.Random(seed)
    formats = ("8 (9{a}) {b}-{c}-{d}", "+7 9{a} {b} {c} {d}", "89{a}{b}{c}{d}", "9{a}{b}{c}{d}")
    rows = []
    for entry in range(1, entries + 1):
        a, b, c, d = "%02d" % rng.randrange(100), "%03d" % rng.randrange(1000), "%02d" % rng.randrange(100), \
            "%02d" % rng.randrange(100)
        mobile = rng.choice(formats).format(a=a, b=b, c=c, d=d)
        work = rng.choice(["", "(3843) %06d" % rng.randrange(10 ** 6), "+44 20 %08d" % rng.randrange(10 ** 8),
                           "ext. 201", "%06d" % rng.randrange(10 ** 6)])
        rows.append((1 if entry % 3 == 0 else 0, entry, "First%d" % entry, "Last%d" % entry, mobile, work))
    with php.connection.cursor() as cursor:
        # only %s in VALUES: PyMySQL then sends one multi-row INSERT, not one round trip per row
        cursor.executemany("INSERT INTO addressbook (domain_id, id, firstname, lastname, mobile, work) "
                           "VALUES (%s, %s, %s, %s, %s, %s)", rows)
        groups = {0: {}, 1: {}}  # domain -> group_id -> name
        for name in ("Gold", "Silver", "Bronze", "Staff", "Suppliers", "Press", "Family", "Old"):
            for domain in (0, 1):
                cursor.execute("INSERT INTO group_list (domain_id, group_name, group_header, group_footer) "
                               "VALUES (%s, %s, '', '')", (domain, name))
                groups[domain][cursor.lastrowid] = name
        members = [(domain, entry, group) for domain, entry, *_ in rows
                   for group in rng.sample(sorted(groups[domain]), 2)]
        cursor.executemany("INSERT INTO address_in_groups (domain_id, id, group_id) VALUES (%s, %s, %s)", members)
        for table in ("addressbook", "group_list"):
            cursor.execute("ANALYZE TABLE %s" % table)
            cursor.fetchall()
    names = {(domain, entry, groups[domain][group]) for domain, entry, group in members}
    return rows, names


def explain(php, config, key):
    sql, params = vip_query(config.vip)
    with php.connection.cursor(pymysql.cursors.DictCursor) as cursor:
        cursor.execute("EXPLAIN " + sql, tuple(key if p is KEY else p for p in params))
        return cursor.fetchall()


@TWO_VARIANTS
def test_lookup_uses_the_index(book, variant):
    setup, php = book(variant, install=False)
    rows, memberships = populate(php)
    install_addressbook(setup)  # indexes the existing entries in one statement per phone column
    for table in ("address_in_groups", AB_KEYS):
        php.execute("ANALYZE TABLE %s" % table)
    # The SQL key function computed every key as Python does.
    expected = sorted({(number_key(phone, PLAN), domain, entry)
                       for domain, entry, _, _, mobile, work in rows for phone in (mobile, work)
                       if number_key(phone, PLAN) is not None})
    assert len(expected) > 2000
    assert sorted((key, domain, entry) for key, domain, entry, _, _ in php.index()) == expected
    for extra, priorities in ((ADDRESSBOOK, None), (GROUPS, {"Gold": 20, "Silver": 15})):
        setup.rewrite(extra)
        for key in (expected[len(expected) // 3][0], expected[len(expected) // 2][0], "79999999999"):
            plan = explain(php, setup.config, key)
            by_table = {row["table"]: row for row in plan}
            assert by_table["k"]["key"] == "PRIMARY", plan
            assert by_table["k"]["type"] in ("ref", "const", "eq_ref"), plan
            if priorities:
                assert by_table["ag"]["key"] == "vipsticky_entry", plan
                assert by_table["ag"]["type"] in ("ref", "eq_ref"), plan
            for row in plan:
                if row["table"] is not None and not row["table"].startswith("<"):  # <derived>: its own few rows
                    assert row["type"] != "ALL", plan
            # and the call answers right at this size
            best = None
            for entry_key, domain, entry in expected:
                if entry_key != key:
                    continue
                if priorities is None:
                    best = 10
                else:
                    for group_domain, member, name in memberships:
                        if (group_domain, member) == (domain, entry) and name in priorities:
                            best = max(best or -1, priorities[name])
            assert vip(setup, key)[:2] == ((str(best), "1") if best is not None else ("5", "0")), (extra, key)


# -- PHP Address Book keeps working ------------------------------------------------------
@pytest.mark.parametrize("variant", ["classic", "current", "interim"])
def test_php_writes_unchanged_after_install(book, variant):
    setup, php = book(variant, install=False)
    php.add(firstname="Before", lastname="Install", mobile="89130000001")

    def shape():
        columns = php.execute("SELECT table_name, column_name, column_type, is_nullable, column_default "
                              "FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name IN "
                              "(%s) ORDER BY table_name, ordinal_position" % ", ".join(["%s"] * len(PHP_TABLES)),
                              PHP_TABLES)
        create = [php.execute("SHOW CREATE TABLE %s" % table)[0][1] for table in ("addressbook", "group_list",
                                                                                  "month_lookup")]
        return columns, create

    before = shape()
    install_addressbook(setup)
    assert shape() == before
    count = php.count()
    entry = php.add(firstname="After", lastname="Install", mobile="89130000002", notes="still works")
    assert php.count() == count + 1
    assert php.execute("SELECT firstname, lastname, mobile, notes FROM addressbook WHERE id = %s", (entry,)) == \
        (("After", "Install", "89130000002", "still works"),)
    assert vip(setup, "89130000001") == ("10", "1", "Before Install")
    assert vip(setup, "89130000002") == ("10", "1", "After Install")
    group = php.add_group("Gold")
    php.join(entry, group)
    assert php.count("address_in_groups") == 1
    if variant != "interim":  # the real app cannot edit on the interim schema
        php.edit(entry, firstname="After", lastname="Edit", mobile="89130000003")
        assert php.count() == count + 2
        assert vip(setup, "89130000003") == ("10", "1", "After Edit")


# -- SQLite cannot hold an address book ----------------------------------------------------
@pytest.mark.parametrize("command", [["vip", "sync"], ["vip", "uninstall-addressbook"]])
def test_address_book_commands_on_sqlite_say_so_in_one_line(sqlite, command):
    result = vipsticky(sqlite, *command)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "vipsticky: PHP Address Book lives in MySQL/MariaDB; the [database] url is SQLite\n"


@pytest.mark.parametrize("source", ["addressbook", "both"])
def test_addressbook_source_on_sqlite_is_a_config_error(make_setup, tmp_path, source):
    setup = make_setup("sqlite")  # schema installed with source = table
    setup.rewrite("[vip]\nsource = %s\n" % source)
    csv_file = tmp_path / "vips.csv"
    csv_file.write_text("89130751580,10,x\n")
    commands = [["lookup", "89130751580"], ["vip", "list"], ["purge"], ["install-schema"]]
    if source == "addressbook":
        commands += [["lookup", "89130751580", "--json"], ["vip", "add", "89130751580"],
                     ["vip", "remove", "89130751580"], ["vip", "import", str(csv_file)], ["vip", "sync"],
                     ["install-schema", "--addressbook"], ["bindings", "list"]]
    for command in commands:
        outcome = vipsticky(setup, *command)
        assert outcome.returncode != 0, command
        line = one_line(outcome.stderr)
        assert "mysql" in line.lower(), (command, line)
        assert outcome.stdout == "", command
