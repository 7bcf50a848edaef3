"""The vipsticky command's conventions (issue 12, points 2, 4, 5 and 6): help on several
lines, --version, --config anywhere, vip list naming where each VIP comes from, singular
and plural, errors in words with the fix for each MySQL error an install meets, --json
on every listing, `serve` reloading on SIGHUP, and `vip import` of , and ; CSV files."""
import json
import os
import re
import signal
import uuid
from types import SimpleNamespace

import click
import pytest

import private_mariadb
from agi_scripts.asterisk_standin import Asterisk
from agi_scripts.cli import cli
from agi_scripts.config import parse_database_url
from agi_scripts.mysql_fixes import FIXES, fix_for
from test_addressbook import AddressBook
from utils import (AllIdle, CallInFlight, SERVER_URL, Served, assert_clean, events_ini, free_port, install_into, one_line,
                   server_connection, vipsticky)
from wheel_install import REPO, version

NUMBER = "89130751580"


def without_config(setup):
    return {name: value for name, value in setup.env.items() if name != "VIPSTICKY_CONFIG"}


def ok(where, *args):
    done = vipsticky(where, *args)
    assert (done.returncode, done.stderr) == (0, ""), (args, done.stderr)
    return done.stdout


def commands(group=cli, path=("vipsticky",)):
    """(path, command) of every command and group under the CLI."""
    for name, command in group.commands.items():
        yield path + (name,), command
        if isinstance(command, click.Group):
            yield from commands(command, path + (name,))


# -- help, version, --config ------------------------------------------------------------------
@pytest.mark.parametrize("args", [[], ["vip"], ["bindings"]])
def test_no_command_prints_the_help_on_several_lines_and_exits_2(args):
    done = vipsticky(None, *args)
    assert done.returncode == 2 and done.stderr == ""
    assert done.stdout.startswith("Usage: vipsticky %s" % " ".join(args + ["[OPTIONS] COMMAND [ARGS]..."]))
    assert "\nCommands:\n" in done.stdout and len(done.stdout.splitlines()) > 8
    assert done.stdout == vipsticky(None, *args, "--help").stdout


def test_version():
    assert vipsticky(None, "--version").stdout == "vipsticky %s\n" % version()


def test_every_command_takes_config_and_every_listing_json():
    for path, command in commands():
        options = {name for param in command.params for name in getattr(param, "opts", ())}
        assert "--config" in options, path
        if path[-1] in ("list", "lookup", "try"):
            assert "--json" in options, path


def test_config_before_or_after_the_command(sqlite):
    ok(sqlite, "vip", "add", NUMBER, "--label", "Here")
    bare = without_config(sqlite)
    expected = [{"key": "79130751580", "priority": 10, "label": "Here"}]
    for args in (["--config", sqlite.path, "vip", "list", "--json"], ["vip", "list", "--json", "--config", sqlite.path],
                 ["vip", "--config", sqlite.path, "list", "--json"], ["vip", "list", "--config=%s" % sqlite.path,
                                                                       "--json"]):
        assert json.loads(ok(bare, *args)) == expected, args
    assert json.loads(ok(bare, "lookup", NUMBER, "--config", sqlite.path, "--json"))["label"] == "Here"
    # after the command's name it wins over $VIPSTICKY_CONFIG and the option before it
    other = sqlite.path + ".missing"
    assert json.loads(ok(dict(bare, VIPSTICKY_CONFIG=other), "--config", other, "vip", "list", "--config",
                         sqlite.path, "--json")) == expected


# -- singular and plural, errors in words ---------------------------------------------------
def test_singular_and_plural(sqlite, tmp_path):
    assert ok(sqlite, "vip", "list").splitlines()[-1] == "0 VIP numbers in table vip_numbers"
    ok(sqlite, "vip", "add", NUMBER)
    assert ok(sqlite, "vip", "list").splitlines()[-1] == "1 VIP number in table vip_numbers"
    one = tmp_path / "one.csv"
    one.write_text("3843123456\n")
    assert ok(sqlite, "vip", "import", str(one)) == "imported 1 VIP number\n"
    assert ok(sqlite, "bindings", "list") == "0 live bindings\n"
    ok(sqlite, "bindings", "set", NUMBER, "PJSIP/alena")
    assert ok(sqlite, "bindings", "list").splitlines()[-1] == "1 live binding"
    ok(sqlite, "bindings", "set", NUMBER, "PJSIP/boris", "--queue", "support")
    assert ok(sqlite, "bindings", "list").splitlines()[-1] == "2 live bindings"
    assert ok(sqlite, "bindings", "delete", NUMBER, "--queue", "support") == "1 binding of 79130751580 deleted\n"
    database = sqlite.database()
    database.run("UPDATE numbers_remember SET expires_at = 1")
    database.close()
    assert ok(sqlite, "purge") == "purged 1 expired binding\n"
    assert ok(sqlite, "purge") == "purged 0 expired bindings\n"


CLASS_NAME = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)+\b|\b\w+(Error|Exception):")  # BadArgument, KeyError:


def test_errors_are_in_words(sqlite, tmp_path):
    call = assert_clean(sqlite.run("sticky_route", [""]))
    assert call.warnings == ["vipsticky sticky_route: unknown action '': use lookup or remember; failing open"]
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_bytes(b"89130751580;10;\xff\n")
    for args in (["vip", "add", "anonymous"], ["vip", "import", str(bad_csv)], ["bindings", "set", NUMBER, "x"],
                 ["lookup", NUMBER, "--queue", "a b"], ["try", "nope"], ["--config", str(tmp_path / "none"), "purge"],
                 ["vip", "add"], ["examples", str(bad_csv)]):
        done = vipsticky(sqlite, *args)
        assert done.returncode in (1, 2), args
        line = one_line(done.stderr)
        assert line.startswith("vipsticky: ") and not CLASS_NAME.search(line), line


# -- what to do about each MySQL error an install meets ---------------------------------------
@pytest.fixture
def mysql_account(request):
    """account(grants...) -> url of a new database and an account with those grants on it (on
    the shared server); dropped at the end."""
    server = parse_database_url(SERVER_URL)
    made = []

    def account(*grants, database=None, password=None):
        name = "vs_fix_%s" % uuid.uuid4().hex[:8]
        password = password or uuid.uuid4().hex
        made.append(name)
        connection = server_connection()
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE %s" % name)
            cursor.execute("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'" % (name, password))
            for grant in grants:
                cursor.execute("GRANT %s TO '%s'@'%%'" % (grant.format(db=name), name))
        connection.close()
        return "mysql://%s:%s@%s:%d/%s" % (name, password, server.host, server.port, database or name)

    yield account
    connection = server_connection()
    with connection.cursor() as cursor:
        for name in made:
            cursor.execute("DROP DATABASE IF EXISTS %s" % name)
            cursor.execute("DROP USER IF EXISTS '%s'@'%%'" % name)
    connection.close()


def says_the_fix(tmp_path, url, code, *args, extra=""):
    path = tmp_path / ("fix-%d.conf" % code)
    path.write_text("[database]\nurl = %s\nconnect_timeout = 2\n%s" % (url, extra))
    done = vipsticky({"PATH": os.environ["PATH"], "VIPSTICKY_CONFIG": str(path)}, *(args or ("install-schema",)))
    line = one_line(done.stderr)
    assert done.returncode == 1 and "(MySQL error %d)" % code in line, line
    assert line.endswith(". " + FIXES[code]), line
    password = parse_database_url(url).password
    assert not password or password not in line
    return line


def test_each_mysql_error_of_an_install_comes_with_its_fix(mysql_account, tmp_path):
    server = parse_database_url(SERVER_URL)
    says_the_fix(tmp_path, "mysql://%s@%s:%d/vs_no_such_db_%s" % (server.user, server.host, server.port,
                                                                 uuid.uuid4().hex[:6]), 1049)
    says_the_fix(tmp_path, mysql_account("SELECT ON {db}.*", password="right").replace(":right@", ":wrong@"), 1045)
    says_the_fix(tmp_path, mysql_account(database="mysql"), 1044, "purge")
    says_the_fix(tmp_path, mysql_account("SELECT, INSERT, UPDATE, DELETE ON {db}.*"), 1142)
    refused = says_the_fix(tmp_path, "mysql://root@127.0.0.1:%d/x" % free_port(), 2003)
    assert "Can't connect to MySQL server on '127.0.0.1' (" in refused, refused  # as PyMySQL says it


def addressbook_grants(without=None):
    """The grants of README's dedicated address-book account on database {db}, one privilege left out."""
    grants = ["CREATE ROUTINE, ALTER ROUTINE, EXECUTE ON {db}.*", "SELECT, TRIGGER ON {db}.addressbook",
              "SELECT ON {db}.group_list", "SELECT, INDEX ON {db}.address_in_groups"] + [
        "CREATE, SELECT, INSERT, UPDATE, DELETE ON {db}.%s" % table
        for table in ("vipsticky_meta", "vipsticky_addressbook_keys", "vip_numbers", "numbers_remember",
                      "vipsticky_events")]
    return [grant.replace(without + ", ", "") for grant in grants] if without else grants


def test_addressbook_without_alter_routine_says_the_fix(mysql_account, make_setup, tmp_path):
    setup = make_setup("mariadb", install=False)
    php = AddressBook(setup, "current")
    php.create_tables()
    php.close()
    url = mysql_account(database=setup.mysql_database)
    name = parse_database_url(url).user
    connection = server_connection()
    with connection.cursor() as cursor:
        for grant in addressbook_grants(without="ALTER ROUTINE"):
            cursor.execute("GRANT %s TO '%s'@'%%'" % (grant.format(db=setup.mysql_database), name))
    connection.close()
    says_the_fix(tmp_path, url, 1370, "install-schema", "--addressbook", extra="[vip]\nsource = both\n")


def test_binary_logging_says_the_fix(tmp_path_factory, monkeypatch):
    """A server with binary logging on: an account without SUPER cannot create the
    address book's function until log_bin_trust_function_creators = 1 (README's grants)."""
    if not private_mariadb.available():
        pytest.fail("mariadb-install-db and mariadbd are needed (apt-get install mariadb-server)")
    folder = tmp_path_factory.mktemp("binlog")
    wrapper = folder / "mariadbd-with-binlog"
    wrapper.write_text('#!/bin/sh\nexec %s "$@" --log-bin=%s/binlog --server-id=1\n' % (private_mariadb.SERVER, folder))
    wrapper.chmod(0o755)
    monkeypatch.setattr(private_mariadb, "SERVER", str(wrapper))
    server = private_mariadb.PrivateMariaDB(folder / "server")
    server.install()
    server.start()
    try:
        assert server.execute("SELECT @@log_bin") == ((1,),)
        server.execute("CREATE DATABASE ab")
        php = AddressBook(SimpleNamespace(connection=lambda: server.connect("ab")), "current")
        php.create_tables()
        php.close()
        server.execute("CREATE USER 'owner'@'%' IDENTIFIED BY 'pw'",
                       *["GRANT %s TO 'owner'@'%%'" % grant.format(db="ab") for grant in addressbook_grants()])
        url = server.url("ab", "owner", "pw")
        says_the_fix(tmp_path_factory.mktemp("conf"), url, 1419, "install-schema", "--addressbook",
                     extra="[vip]\nsource = both\n")
        server.execute("SET GLOBAL log_bin_trust_function_creators = 1")  # the fix
        path = folder / "fixed.conf"
        path.write_text("[database]\nurl = %s\n[vip]\nsource = both\n" % url)
        fixed = vipsticky({"PATH": os.environ["PATH"], "VIPSTICKY_CONFIG": str(path)}, "install-schema",
                          "--addressbook")
        assert fixed.returncode == 0, fixed.stderr
    finally:
        server.destroy()


def test_each_fix_is_one_sentence_and_found_by_its_code():
    for code, sentence in FIXES.items():
        assert sentence[0].isupper() and sentence.endswith(".") and "\n" not in sentence, code
        assert fix_for("something failed (MySQL error %d)" % code) == sentence
    assert FIXES[1227] != FIXES[1419] and "SUPER" in FIXES[1227] and "log_bin_trust_function_creators" in FIXES[1227]
    assert fix_for("Duplicate entry (MySQL error 1062)") is None and fix_for("no code here") is None


def test_the_readme_quotes_each_fix():
    """README's table of MySQL errors says exactly what the CLI says (agi_scripts/mysql_fixes.py)."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        readme = " ".join(handle.read().split())
    missing = [code for code, sentence in FIXES.items() if sentence not in readme]
    assert not missing, "README.md lacks the fix sentences of MySQL errors %s" % missing


# -- vip list: where each VIP comes from --------------------------------------------------------
def test_vip_list_names_the_source_and_group(make_setup):
    setup = make_setup("mariadb", extra="[vip]\nsource = both\ngroups = Gold:20, Silver:15\n", install=False)
    php = AddressBook(setup, "current")
    php.create_tables()
    install_into(setup.config, addressbook=True)
    gold, silver = php.add_group("Gold"), php.add_group("Silver")
    ivan = php.add(firstname="Ivan", lastname="Petrov", mobile="8 913 075-15-81")
    php.join(ivan, gold)
    php.join(ivan, silver)
    olga = php.add(firstname="Olga", lastname="Ivanova", work="3843-12-34-56")
    php.join(olga, silver)
    php.add(firstname="Nobody", lastname="Special", mobile="8 913 000-00-00")  # in no VIP group
    php.close()
    ok(setup, "vip", "add", NUMBER, "--label", "Taxi Plus", "--priority", "30")
    assert json.loads(ok(setup, "vip", "list", "--json")) == [
        {"key": "79130751580", "priority": 30, "label": "Taxi Plus", "source": "table", "group": None},
        {"key": "79130751581", "priority": 20, "label": "Ivan Petrov", "source": "addressbook", "group": "Gold"},
        {"key": "73843123456", "priority": 15, "label": "Olga Ivanova", "source": "addressbook", "group": "Silver"},
        {"key": "79130751581", "priority": 15, "label": "Ivan Petrov", "source": "addressbook", "group": "Silver"}]
    shown = ok(setup, "vip", "list").splitlines()
    assert re.fullmatch(r"79130751580 +30  Taxi Plus +table", shown[0]), shown
    assert re.fullmatch(r"79130751581 +20  Ivan Petrov +address book, group Gold", shown[1]), shown
    assert shown[-1] == "1 VIP number in table vip_numbers; 2 VIP numbers from the address book (3 group " \
                        "memberships)"
    setup.rewrite("[vip]\nsource = addressbook\n")
    assert json.loads(ok(setup, "vip", "list", "--json")) == [
        {"key": "73843123456", "priority": 10, "label": "Olga Ivanova", "source": "addressbook", "group": None},
        {"key": "79130000000", "priority": 10, "label": "Nobody Special", "source": "addressbook", "group": None},
        {"key": "79130751581", "priority": 10, "label": "Ivan Petrov", "source": "addressbook", "group": None}]
    assert ok(setup, "vip", "list").splitlines()[-1] == "3 VIP numbers from the address book; table vip_numbers " \
                                                        "holds 1 more number, not used with [vip] source = addressbook"


# -- vip import: , and ; ------------------------------------------------------------------------
def imported(setup, tmp_path, content, encoding="utf-8"):
    path = tmp_path / "vips.csv"
    path.write_bytes(content.encode(encoding) if isinstance(content, str) else content)
    return vipsticky(setup, "vip", "import", str(path))


@pytest.mark.parametrize("content", [
    "Номер;Приоритет;Метка\r\n8 913 075-15-80;25;Иванов, Иван\r\n\r\n3843123456;;Office\r\n",
    "\ufeff8 913 075-15-80;25;Иванов, Иван\n3843123456;;\"Office\"\n",
    "number,priority,label\n8 913 075-15-80,25,\"Иванов, Иван\"\n3843123456,,Office\n",
    "\"8 913 075-15-80\",25,\"Иванов, Иван\"\n3843123456,,Office",
    "phone;prio\n8 913 075-15-80;25;Иванов, Иван\n3843123456;;Office\n",
], ids=["semicolon-header-crlf", "semicolon-bom", "comma-header", "comma-quoted", "other-header"])
def test_vip_import_reads_comma_and_semicolon_files(sqlite, tmp_path, content):
    done = imported(sqlite, tmp_path, content)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "imported 2 VIP numbers\n")
    assert json.loads(ok(sqlite, "vip", "list", "--json")) == [
        {"key": "79130751580", "priority": 25, "label": "Иванов, Иван"},
        {"key": "73843123456", "priority": 10, "label": "Office"}]


@pytest.mark.parametrize("content,line,words", [
    ("Номер;Приоритет;Метка\n8 913 075-15-80;25;x\n\n201;10;y\n", 4, "not a usable external number"),
    ("8 913 075-15-80;25;x\n3843123456;ten;y\n", 2, "priority"),
    ("8 913 075-15-80,25,Ivanov, Ivan\n", 1, "4 fields"),
    ("8 913 075-15-80;25;x\n3843123456;;\"two\nlines\"\n", 2, "control or bidirectional"),
    (b"8 913 075-15-80;25;x\n3843123456;;\xcf\xf0\xe8\xe2\xe5\xf2\n", 2, "not UTF-8"),
])
def test_vip_import_names_the_line_of_a_bad_row(sqlite, tmp_path, content, line, words):
    done = imported(sqlite, tmp_path, content)
    message = one_line(done.stderr)
    assert done.returncode == 1 and "vips.csv line %d: " % line in message and words in message, message
    assert json.loads(ok(sqlite, "vip", "list", "--json")) == []


# -- serve: SIGHUP reloads the config -------------------------------------------------------------
def test_serve_reloads_its_config_on_sighup(make_setup):
    old, new = make_setup("sqlite"), make_setup("sqlite")
    old.database().remember("79130751580", "", "PJSIP/alena", 600)
    new.database().remember("79130751580", "", "PJSIP/boris", 600)
    with Served(old) as served:
        assert served.call("lookup", callerid=NUMBER).variables["STICKY_AGENT"] == "PJSIP/alena"
        in_flight = CallInFlight(served.address, NUMBER)
        assert in_flight.first.startswith('SET VARIABLE "STICKY_DIAL_TIMEOUT"')
        with open(old.path, "w") as handle:  # the config now names the other database
            handle.write("[database]\nurl = %s\n%s" % (new.url, events_ini(os.path.dirname(old.path))))
        served.process.send_signal(signal.SIGHUP)
        served.wait_for("reloaded")
        assert served.call("lookup", callerid=NUMBER).variables["STICKY_AGENT"] == "PJSIP/boris"
        finished = in_flight.finish(Asterisk(devices=AllIdle()))
        assert finished.variables["STICKY_AGENT"] == "PJSIP/alena"  # finished on the old pool
        with open(old.path, "w") as handle:
            handle.write("[database]\nurl = %s\nbogus = 1\n%s" % (old.url, events_ini(os.path.dirname(old.path))))
        served.process.send_signal(signal.SIGHUP)
        served.wait_for("reload refused")
        assert served.call("lookup", callerid=NUMBER).variables["STICKY_AGENT"] == "PJSIP/boris"  # as it was
        served.process.send_signal(signal.SIGHUP)
        served.wait_for("reload refused", 2)
        assert served.process.poll() is None
        served.stop()
    lines = served.log
    assert lines[1] == "vipsticky serve: reloaded %s: [database] changed, new pool for %s (calls in flight finish " \
                       "on the old one)" % (old.path, new.url)
    assert [line for line in lines if "reload" in line][1:] == [
        "vipsticky serve: reload refused, serving on with the config as it was: config file %s: [database] bogus is "
        "not a setting (known: url, connect_timeout, ssl, ssl_ca, breaker_seconds)" % old.path] * 2
    assert lines[-1] == "vipsticky serve: stopped" and len(lines) == 5


def test_the_systemd_unit_reloads_with_sighup():
    with open(os.path.join(REPO, "vipsticky-fastagi.service.example")) as handle:
        assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in handle.read()
