"""vip_or_not over the AGI protocol, the vip CLI and `vipsticky lookup`, on SQLite and MariaDB.

Every call runs the installed console script as Asterisk would (agi_scripts.asterisk_standin), against
a real database: nothing inside the script process is replaced.
"""
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from agi_scripts.asterisk_standin import Peer
from agi_scripts.cli import cli
from agi_scripts.number_keys import number_key
from utils import (PLAN, BlackHole, assert_failed_open, check_vip_call, events_ini, free_port, one_line, vip_of,
                   vip_result, vipsticky)

PASSWORD = "S3cretPass"
LOOKUP_KEYS = {"number", "key", "vip", "priority", "label", "source", "bindings"}


# -- helpers --------------------------------------------------------------------------
def config_env(tmp_path, text, name="vipsticky.conf"):
    path = tmp_path / name
    path.write_text(text + events_ini(tmp_path))
    return dict(os.environ, VIPSTICKY_CONFIG=str(path))


def run_vip_or_not(env, args, callerid=""):
    return Peer().run_script("vip_or_not", list(args), callerid=callerid, process_env=env)


# -- vip_or_not -----------------------------------------------------------------------
def test_vip_added_with_database_api(setup):
    database = setup.database()
    database.vip_add("79130751580", 30, "Ivan Petrov")
    database.vip_add("73843123456", 12, "Office")
    database.close()
    for number, expected in (("+79130751580", ("30", "1", "Ivan Petrov")),
                             ("8 (913) 075-15-80", ("30", "1", "Ivan Petrov")),
                             ("9130751580", ("30", "1", "Ivan Petrov")),
                             ("12-34-56", ("12", "1", "Office")),
                             ("3843123456", ("12", "1", "Office")),
                             ("89130751581", ("5", "0", "")),
                             ("+380441234567", ("5", "0", ""))):
        assert vip_of(setup, [number]) == expected, number


def test_vip_added_with_cli(setup):
    added = vipsticky(setup.env, "vip", "add", "8 (913) 075-15-80", "--priority", "25", "--label", "Anna Karenina")
    assert added.returncode == 0, added.stderr
    assert added.stderr == ""
    assert "79130751580" in added.stdout
    default = vipsticky(setup.env, "vip", "add", "3123456", "--label", "Local")
    assert default.returncode == 0, default.stderr
    assert vip_of(setup, ["+7 913 075-15-80"]) == ("25", "1", "Anna Karenina")
    assert vip_of(setup, ["83843123456"]) == ("10", "1", "Local")
    assert vip_of(setup, ["83843123457"]) == ("5", "0", "")


def test_number_defaults_to_callerid(setup):
    database = setup.database()
    database.vip_add("79130751580", 17, "By caller ID")
    database.close()
    assert vip_of(setup, [], callerid="+79130751580") == ("17", "1", "By caller ID")
    assert vip_of(setup, [], callerid="89130751580") == ("17", "1", "By caller ID")
    assert vip_of(setup, [], callerid="89130751589") == ("5", "0", "")
    # An explicit argument wins over the caller ID, both ways.
    assert vip_of(setup, ["89130751589"], callerid="+79130751580") == ("5", "0", "")
    assert vip_of(setup, ["9130751580"], callerid="anonymous") == ("17", "1", "By caller ID")


GARBAGE = ["anonymous", "restricted", "", "201", "9130751580' OR '1'='1", "*9130751580", "913075158O",
           "1234567890123456", "5123456"]


def test_garbage_never_touches_the_database(setup):
    """With vip_numbers gone, any lookup fails (and fails open with a WARNING): the
    garbage numbers must not get that far."""
    database = setup.database()
    database.vip_add("79130751580", 30, "x")
    database.run("DROP TABLE vip_numbers")
    database.close()
    # control: a usable number does reach the database, which now fails
    control = check_vip_call(setup.run("vip_or_not", ["89130751580"]), warnings=1)
    assert vip_result(control) == ("5", "0", "")
    for number in GARBAGE:
        assert vip_of(setup, [number]) == ("5", "0", ""), number
    for callerid in ("anonymous", ""):
        assert vip_of(setup, [], callerid=callerid) == ("5", "0", ""), callerid


def test_garbage_never_opens_a_missing_sqlite_file(tmp_path):
    missing = tmp_path / "nowhere" / "vip.sqlite3"
    env = config_env(tmp_path, "[database]\nurl = sqlite:///%s\n" % missing)
    for number in ("anonymous", "201", "9130751580' OR '1'='1"):
        call = check_vip_call(run_vip_or_not(env, [number]))
        assert vip_result(call) == ("5", "0", "")
    assert not missing.exists()
    assert not missing.parent.exists()


def test_label_cannot_inject_agi_commands(setup):
    label = 'Ivan "The Boss" C:\\Users\\ivan\r\nVERBOSE x\nSET VARIABLE QUEUE_PRIO 99\rend'
    database = setup.database()
    database.vip_add("79130751580", 20, label)
    database.close()
    call = check_vip_call(setup.run("vip_or_not", ["89130751580"]))
    label_commands = [command for command in call.commands if "VIP_LABEL" in command]
    assert len(label_commands) == 1
    value = call.variables["VIP_LABEL"]
    assert "\r" not in value and "\n" not in value
    assert value.startswith('Ivan "The Boss" C:\\Users\\ivan')
    assert "VERBOSE x" in value
    assert " ".join(value.split()) == " ".join(label.split())  # only the line breaks changed
    assert call.variables["QUEUE_PRIO"] == "20"
    assert call.variables["VIP"] == "1"
    assert call.warnings == [] and call.verbose == []


def test_custom_priorities(setup):
    setup.rewrite("[vip]\npriority = 42\nnormal_priority = -3\n")
    added = vipsticky(setup.env, "vip", "add", "9130751580", "--label", "Default prio")
    assert added.returncode == 0, added.stderr
    database = setup.database()
    database.vip_add("73843123456", 7, "Explicit")
    database.close()
    assert vip_of(setup, ["+79130751580"]) == ("42", "1", "Default prio")
    assert vip_of(setup, ["123456"]) == ("7", "1", "Explicit")
    assert vip_of(setup, ["89130751581"]) == ("-3", "0", "")
    assert vip_of(setup, ["anonymous"]) == ("-3", "0", "")


# -- fail-open ------------------------------------------------------------------------
def check_fail_open(call, connect_timeout, normal="5"):
    check_vip_call(call, warnings=1)
    assert_failed_open(call, "vip_or_not", connect_timeout + 1.0,
                       fail_open={"QUEUE_PRIO": normal, "VIP": "0", "VIP_LABEL": ""})
    everything = "\n".join(call.commands + call.verbose + call.warnings + [call.stderr])
    assert PASSWORD not in everything
    return call


def test_fail_open_database_down(tmp_path):
    env = config_env(tmp_path, "[database]\nurl = mysql://asterisk:%s@127.0.0.1:%d/vipsticky\nconnect_timeout = 1\n"
                     % (PASSWORD, free_port()))
    call = check_fail_open(run_vip_or_not(env, ["89130751580"]), 1)
    assert "127.0.0.1" in call.warnings[0]


def test_fail_open_database_down_keeps_custom_normal_priority(tmp_path):
    env = config_env(tmp_path, "[database]\nurl = mysql://asterisk:%s@127.0.0.1:%d/vipsticky\nconnect_timeout = 1\n"
                     "[vip]\nnormal_priority = 7\n" % (PASSWORD, free_port()))
    check_fail_open(run_vip_or_not(env, [], callerid="+79130751580"), 1, normal="7")


def test_fail_open_database_never_answers(tmp_path):
    """A server that accepts the TCP connection and never speaks: the call must still
    be answered within connect_timeout + 1 s."""
    with BlackHole(accept=False, backlog=16) as silent:  # the kernel completes the handshake; nobody accept()s
        env = config_env(tmp_path, "[database]\nurl = mysql://asterisk:%s@127.0.0.1:%d/vipsticky\n"
                         "connect_timeout = 1\n" % (PASSWORD, silent.port))
        check_fail_open(run_vip_or_not(env, ["89130751580"]), 1)


def test_fail_open_wrong_password(mariadb, tmp_path):
    env = config_env(tmp_path, "[database]\nurl = mysql://root:%s@127.0.0.1:3306/%s\nconnect_timeout = 1\n"
                     % (PASSWORD, mariadb.mysql_database))
    check_fail_open(run_vip_or_not(env, ["89130751580"]), 1)


def test_fail_open_table_locked(mariadb):
    """The server is up but the query never gets an answer (an ALTER TABLE, a lock)."""
    database = mariadb.database()
    database.vip_add("79130751580", 30, "Locked out")
    database.close()
    mariadb.rewrite(connect_timeout=1)
    locker = mariadb.connection()
    try:
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLES vip_numbers WRITE")
        check_fail_open(mariadb.run("vip_or_not", ["89130751580"]), 1)
        with locker.cursor() as cursor:
            cursor.execute("UNLOCK TABLES")
    finally:
        locker.close()
    assert vip_of(mariadb, ["89130751580"]) == ("30", "1", "Locked out")


def test_cli_database_down_is_one_line_without_password(tmp_path):
    env = config_env(tmp_path, "[database]\nurl = mysql://asterisk:%s@127.0.0.1:%d/vipsticky\nconnect_timeout = 1\n"
                     % (PASSWORD, free_port()))
    for args in (["lookup", "89130751580"], ["vip", "list"], ["install-schema"]):
        outcome = vipsticky(env, *args)
        assert outcome.returncode == 1, args
        line = one_line(outcome.stderr)
        assert "127.0.0.1" in line
        assert PASSWORD not in outcome.stderr + outcome.stdout


def test_fail_open_missing_sqlite_file_is_not_created(tmp_path):
    missing = tmp_path / "vip.sqlite3"
    env = config_env(tmp_path, "[database]\nurl = sqlite:///%s\nconnect_timeout = 1\n" % missing)
    check_fail_open(run_vip_or_not(env, ["89130751580"]), 1)
    assert not missing.exists()
    assert sorted(os.listdir(tmp_path)) == ["events.log", "vipsticky.conf"]  # the call's outcome: error
    assert (tmp_path / "events.log").read_text().split("\t")[2:6] == ["vip_or_not", "", "", "error"]


@pytest.mark.parametrize("text", [
    "url = mysql://asterisk:%s@127.0.0.1:3306/vipsticky\n[[[ garbage\x01\n" % PASSWORD,
    "[database]\nurl = mysql://asterisk:%s@127.0.0.1:3306/vipsticky\nthis line is garbage\n" % PASSWORD,
    "[database]\nurl = mysql://asterisk:%s@127.0.0.1:3306/vipsticky\n[vip]\nsource = ldap\n" % PASSWORD,
    "[database]\nurl = postgres://asterisk:%s@127.0.0.1/vipsticky\n" % PASSWORD,
    "[database]\nurl = mysql://asterisk:%s@127.0.0.1:3306/vipsticky\nconnect_timeout = soon\n" % PASSWORD,
    "[database]\nurl = mysql://asterisk:%s@127.0.0.1:99999/vipsticky\n" % PASSWORD,
    "[database]\nurl = mysql://asterisk:%s@127.0.0.1:3306/\n" % PASSWORD,
    "[database]\nurl = mysql://asterisk:%s@127.0.0.1:3306/vipsticky\n[vip]\npriority = high\n" % PASSWORD,
    "[database]\nurl = mysql://asterisk:%s@127.0.0.1:3306/vipsticky\n[database]\nurl = x\n" % PASSWORD,
], ids=["no-section", "garbage-line", "unknown-source", "bad-scheme", "bad-timeout", "bad-port", "no-database",
        "bad-priority", "duplicate-section"])
def test_fail_open_bad_config(tmp_path, text):
    env = config_env(tmp_path, text)
    check_fail_open(run_vip_or_not(env, ["89130751580"]), 2)


def test_fail_open_config_file_missing(tmp_path):
    env = dict(os.environ, VIPSTICKY_CONFIG=str(tmp_path / "no-such.conf"))
    call = check_fail_open(run_vip_or_not(env, [], callerid="89130751580"), 2)
    assert "no-such.conf" in call.warnings[0]


def test_fail_open_addressbook_source_on_sqlite(sqlite):
    sqlite.rewrite("[vip]\nsource = addressbook\n")
    check_fail_open(sqlite.run("vip_or_not", ["89130751580"]), 2)


# -- `vipsticky lookup --json` agrees with vip_or_not ---------------------------------------
VIPS = {  # key: (priority, label)
    "79130751580": (10, 'Иван "Big" Петров'),
    "73843123456": (20, "Local \\ office"),
    "380441234567": (15, ""),
    "74951234567": (-2, "Low but VIP"),
}
CORPUS = [
    # 79130751580 in many formats
    "+79130751580", "89130751580", "79130751580", "9130751580", "8 (913) 075-15-80", "+7 913 075.15.80",
    " 8-913-075-15-80 ", "+7 (913) 0751580",
    # 73843123456
    "83843123456", "3843123456", "123456", "12-34-56", "3123456", "+7 3843 12-34-56", "8 (3843) 123456",
    # 380441234567
    "+380441234567", "810380441234567", "00380441234567", "380441234567", "+380 44 123 45 67",
    # 74951234567
    "84951234567", "+74951234567", "4951234567", "8 (495) 123-45-67",
    # usable, not VIP
    "89130751581", "+79130751589", "654321", "3843654321", "+4412345678901", "00441234567890", "12345678901",
    "+12345678",
    # not usable
    "anonymous", "unknown", "restricted", "", "201", "5123456", "8101234567", "9130751580' OR '1'='1",
    "*9130751580", "9130751580#", "913075158O", "+", "++79130751580", "1234567890123456", "%913%", "913_075",
    "Ivan", '"89130751580"',
]


def test_lookup_json_agrees_with_vip_or_not(setup):
    database = setup.database()
    for key, (priority, label) in VIPS.items():
        database.vip_add(key, priority, label)
    database.close()
    assert len(CORPUS) >= 40
    with ThreadPoolExecutor(max_workers=8) as pool:
        calls = list(pool.map(lambda number: setup.run("vip_or_not", [number]), CORPUS))
    runner = CliRunner()
    vip_count = 0
    for number, call in zip(CORPUS, calls):
        check_vip_call(call)
        outcome = runner.invoke(cli, ["--config", setup.path, "lookup", "--json", "--", number])
        assert outcome.exit_code == 0, (number, outcome.output)
        lines = outcome.stdout.splitlines()
        assert len(lines) == 1, outcome.stdout
        answer = json.loads(lines[0])
        assert set(answer) == LOOKUP_KEYS
        key = number_key(number, PLAN)
        assert answer["number"] == number
        assert answer["key"] == key
        assert answer["bindings"] == []
        assert str(answer["priority"]) == call.variables["QUEUE_PRIO"], number
        assert ("1" if answer["vip"] else "0") == call.variables["VIP"], number
        assert answer["label"] == call.variables["VIP_LABEL"], number
        if key in VIPS:
            vip_count += 1
            assert answer["vip"] is True
            assert (answer["priority"], answer["label"]) == VIPS[key]
            assert answer["source"] == "table"
        else:
            assert answer["vip"] is False
            assert answer["priority"] == 5
            assert answer["label"] == ""
            assert answer["source"] is None
    assert vip_count == 24


# -- vip add / remove / list / import ----------------------------------------------------
def vip_list(setup):
    listed = vipsticky(setup.env, "vip", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == ""
    return json.loads(listed.stdout)


def test_vip_add_remove_list(setup):
    assert vip_list(setup) == []
    assert vipsticky(setup.env, "vip", "add", "8 (913) 075-15-80", "--priority", "30", "--label",
                     'Anna "A" K').returncode == 0
    assert vipsticky(setup.env, "vip", "add", "3843123456", "--label", "Office").returncode == 0
    assert vip_list(setup) == [{"key": "79130751580", "priority": 30, "label": 'Anna "A" K'},
                               {"key": "73843123456", "priority": 10, "label": "Office"}]
    # adding the same number in another format updates the one entry
    assert vipsticky(setup.env, "vip", "add", "+79130751580", "--priority", "3", "--label", "Anna").returncode == 0
    assert vip_list(setup) == [{"key": "73843123456", "priority": 10, "label": "Office"},
                               {"key": "79130751580", "priority": 3, "label": "Anna"}]
    assert vip_of(setup, ["9130751580"]) == ("3", "1", "Anna")

    removed = vipsticky(setup.env, "vip", "remove", "9130751580")
    assert removed.returncode == 0, removed.stderr
    assert vip_list(setup) == [{"key": "73843123456", "priority": 10, "label": "Office"}]
    assert vip_of(setup, ["89130751580"]) == ("5", "0", "")

    again = vipsticky(setup.env, "vip", "remove", "9130751580")
    assert again.returncode == 1
    assert "79130751580" in one_line(again.stderr)
    assert again.stdout == ""


def test_vip_cli_refuses_bad_input(setup):
    for args in (["vip", "add", "anonymous"],
                 ["vip", "add", "201", "--priority", "10"],
                 ["vip", "add", "89130751580", "--priority", "ten"],
                 ["vip", "add", "89130751580", "--priority", "2000000"],
                 ["vip", "add", "89130751580", "--label", "two\nlines"],
                 ["vip", "remove", "9130751580' OR '1'='1"]):
        refused = vipsticky(setup.env, *args)
        assert refused.returncode != 0, args
        assert one_line(refused.stderr).startswith("vipsticky"), args
        assert refused.stdout == "", args
    assert vip_list(setup) == []


def test_vip_import_with_header(setup, tmp_path):
    csv_file = tmp_path / "vips.csv"
    csv_file.write_text('number,priority,label\n8 (913) 075-15-80,25,"Ivanov, Ivan"\n3843123456,,Office\n'
                        '\n+380441234567\n"+7 495 123-45-67",-1,"Say ""hi"""\n')
    imported = vipsticky(setup.env, "vip", "import", str(csv_file))
    assert imported.returncode == 0, imported.stderr
    assert imported.stderr == ""
    assert "4" in imported.stdout
    assert vip_list(setup) == [{"key": "79130751580", "priority": 25, "label": "Ivanov, Ivan"},
                               {"key": "380441234567", "priority": 10, "label": ""},
                               {"key": "73843123456", "priority": 10, "label": "Office"},
                               {"key": "74951234567", "priority": -1, "label": 'Say "hi"'}]
    assert vip_of(setup, ["89130751580"]) == ("25", "1", "Ivanov, Ivan")
    assert vip_of(setup, ["84951234567"]) == ("-1", "1", 'Say "hi"')


def test_vip_import_without_header_updates(setup, tmp_path):
    database = setup.database()
    database.vip_add("79130751580", 25, "Old")
    database.close()
    csv_file = tmp_path / "vips.csv"
    csv_file.write_text("89130751580,12,New\n123456,11,Office\n")
    imported = vipsticky(setup.env, "vip", "import", str(csv_file))
    assert imported.returncode == 0, imported.stderr
    assert vip_list(setup) == [{"key": "79130751580", "priority": 12, "label": "New"},
                               {"key": "73843123456", "priority": 11, "label": "Office"}]


def check_import_refused(setup, tmp_path, content, line):
    csv_file = tmp_path / "vips.csv"
    csv_file.write_text(content)
    refused = vipsticky(setup.env, "vip", "import", str(csv_file))
    assert refused.returncode == 1, content
    message = one_line(refused.stderr)
    assert "line %d" % line in message, message
    assert "vips.csv" in message, message


def test_vip_import_bad_line_imports_nothing(setup, tmp_path):
    database = setup.database()
    database.vip_add("79130751580", 25, "Before")
    database.close()
    for content, line in (("79130751581,10,ok\n\nanonymous,10,bad\n", 3),
                          ("number,priority,label\n79130751581,ten,x\n", 2),
                          ("79130751581,10,ok\n201\n", 2),
                          ("79130751581,10,ok\n9130751580' OR '1'='1,10,x\n", 2)):
        check_import_refused(setup, tmp_path, content, line)
    assert vip_list(setup) == [{"key": "79130751580", "priority": 25, "label": "Before"}]


@pytest.mark.parametrize("content", [
    pytest.param('79130751581,10,ok\n79130751582,10,"two\nlines"\n'),
    pytest.param("79130751581,10,ok\n79130751582,99999999999,x\n"),
], ids=["label-newline", "priority-range"])
def test_vip_import_bad_value_names_the_line(setup, tmp_path, content):
    check_import_refused(setup, tmp_path, content, 2)
    assert vip_list(setup) == []
