"""vipsticky doctor proves the call path as the Asterisk user; doctor and install-agi read astagidir.

Issue 11, findings 1 and 2: each installed script run once as the Asterisk user through the
Asterisk stand-in, against the real database, with a reserved test number; the first thing
that stops a call is one line with its fix; astagidir comes from asterisk.conf.

The Asterisk user is the system user `nobody`; the doctor runs as root, as on a real host.
The scripts are the installed console scripts, copied with their packages into a venv of
the system Python in a folder nobody can enter (this checkout's own venv may sit behind a
folder nobody cannot enter: its interpreter here is under /root).
"""
import glob
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass

import pytest

import addressbook_ddl
from agi_scripts.asterisk_host import dialplan_queues, read_asterisk_conf, read_config, settings_of
from agi_scripts.call_proof import reserved_number
from agi_scripts.config import NumberPlan
from agi_scripts.number_keys import number_key
from agi_scripts.scripts import NAMES
from utils import lines, server_connection, vipsticky

USER, GROUP = "nobody", "nogroup"
SYSTEM_PYTHON = "/usr/bin/python3"
# What the scripts and the CLI import, copied beside the system Python's venv.
DISTRIBUTIONS = ("vipsticky", "pyst2", "six", "PyMySQL", "click")
PLAN_LINE = "ok   number plan cc=7 trunk=8 intl=810,00 national=10 area=3843 (test number +70000000000)"
ADDRESSBOOK = "[vip]\nsource = addressbook\n"
TABLES = ("numbers_remember", "vip_numbers")


@dataclass
class Host:
    root: str  # 0755, root's: what nobody may enter
    venv: str

    def vipsticky(self, setup, *args):
        """The installed CLI of this host's venv, as root (so install-agi links its scripts)."""
        return subprocess.run([os.path.join(self.venv, "bin", "vipsticky")] + list(args), env=setup.env,
                              capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def host():
    """A venv of the system Python under a folder nobody can enter, holding the installed
    package, its dependencies and its console scripts, as `pip install` into /opt would."""
    if os.geteuid() != 0:
        pytest.skip("the doctor runs the scripts as another user: needs root")
    root = tempfile.mkdtemp(prefix="vipsticky-host-")
    try:
        os.chmod(root, 0o755)
        venv = os.path.join(root, "opt", "vipsticky")
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", venv], check=True, capture_output=True)
        site = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages"))[0]
        for name in DISTRIBUTIONS:
            distribution = importlib.metadata.distribution(name)
            for file in distribution.files:
                if file.parts[0] != ".." and "__pycache__" not in file.parts:
                    target = os.path.join(site, *file.parts)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copyfile(file.locate(), target)
        for name in NAMES + ("vipsticky",):
            with open(os.path.join(os.path.dirname(sys.executable), name)) as handle:
                body = handle.read().split("\n", 1)[1]
            script = os.path.join(venv, "bin", name)
            with open(script, "w") as handle:
                handle.write("#!%s\n%s" % (os.path.join(venv, "bin", "python3"), body))
            os.chmod(script, 0o755)
        yield Host(root, venv)
    finally:
        shutil.rmtree(root)


def place(setup, host, extra=""):
    """Move setup's config (etc/, root:nogroup 0640) and SQLite file (data/) into a folder of
    host that nobody can enter, install the schema as root for nobody and link the scripts
    into its agi-bin/. (folder, agi-bin)."""
    folder = tempfile.mkdtemp(prefix="site-", dir=host.root)
    os.chmod(folder, 0o755)
    os.mkdir(os.path.join(folder, "etc"), 0o755)
    if setup.dialect == "sqlite":
        setup.url = "sqlite:///%s/data/vipsticky.sqlite3" % folder
    setup.path = setup.env["VIPSTICKY_CONFIG"] = os.path.join(folder, "etc", "vipsticky.conf")
    spool = os.path.join(folder, "spool")  # where the calls append their outcomes, as /var/lib/asterisk
    os.mkdir(spool, 0o755)
    os.chown(spool, int(subprocess.check_output(["id", "-u", USER])), 0)
    setup.events_folder = spool
    setup.rewrite(extra)
    os.chown(setup.path, 0, int(subprocess.check_output(["id", "-g", USER])))
    os.chmod(setup.path, 0o640)
    agi_dir = os.path.join(folder, "agi-bin")
    os.mkdir(agi_dir)
    for command in (["install-schema", "--user", USER], ["install-agi", "--agi-dir", agi_dir]):
        done = host.vipsticky(setup, *command)
        assert done.returncode == 0, done.stderr
    return folder, agi_dir


def doctor(host, setup, agi_dir, *args):
    """doctor --user nobody, with no Asterisk to ask (the binary given does not exist)."""
    return host.vipsticky(setup, "doctor", "--user", USER, "--agi-dir", agi_dir,
                          "--asterisk", os.path.join(host.root, "no-asterisk"), *args)


def fixes(result):
    return [line for line in lines(result.stdout) if line.startswith("FIX")]


def assert_healthy(result):
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(line.startswith("ok   ") for line in lines(result.stdout)), result.stdout
    assert result.stderr == ""
    return lines(result.stdout)


def assert_nothing_left(setup):
    rows = setup.query(*("SELECT * FROM %s" % table for table in TABLES))[:-1]
    assert [list(found) for found in rows] == [[] for _ in TABLES], rows


def test_doctor_reports_each_problem_and_passes_when_fixed(make_setup, host):
    """Moved from test_doctor.py: it needs a venv and folders the Asterisk user can reach."""
    setup = make_setup("sqlite")
    folder, agi_dir = place(setup, host)
    os.chmod(setup.path, 0o644)  # world-readable config
    database_file = setup.config.database.path
    os.chown(database_file, 0, 0)  # as a root install without --user leaves it
    for name in NAMES:
        os.unlink(os.path.join(agi_dir, name))
    result = doctor(host, setup, agi_dir)
    assert result.returncode == 1
    problems = fixes(result)
    text = "\n".join(problems)
    assert "readable by every user" in text and "chmod o-rwx" in text
    assert "not writable by nobody" in text
    assert sum("install-agi" in line for line in problems) == 3
    assert lines(result.stderr) == ["vipsticky: %d problem(s) to fix" % len(problems)]

    os.chmod(setup.path, 0o640)
    os.chown(database_file, int(subprocess.check_output(["id", "-u", USER])), -1)
    assert host.vipsticky(setup, "install-agi", "--agi-dir", agi_dir).returncode == 0
    assert_healthy(doctor(host, setup, agi_dir))


# -- a healthy install --------------------------------------------------------------------
@pytest.mark.parametrize("dialect", ("sqlite", "mariadb"))
def test_a_healthy_install_proves_a_call_as_the_asterisk_user_and_leaves_nothing(make_setup, host, dialect):
    setup = make_setup(dialect, install=False)
    _, agi_dir = place(setup, host)
    shown = assert_healthy(doctor(host, setup, agi_dir))
    assert PLAN_LINE in shown
    proof = [line for line in shown if "a call works as nobody" in line]
    assert proof == ["ok   a call works as nobody: vip_or_not, sticky_route lookup/remember/lookup and delnum ran "
                     "from %s against %s with the test number +70000000000; nothing left behind"
                     % (agi_dir, setup.config.database.safe_url)], shown
    assert any(line.startswith("ok   no running Asterisk answers") for line in shown), shown
    assert_nothing_left(setup)


def test_the_reserved_number_is_no_caller_but_makes_a_key():
    for plan in (NumberPlan(), NumberPlan(country_code="1", national_length=10, area_code="212", trunk_prefix="1"),
                 NumberPlan(country_code="49", national_length=11, area_code="30", trunk_prefix="0"),
                 NumberPlan(country_code="998", national_length=3, area_code="", trunk_prefix="")):
        number = reserved_number(plan)
        digits = number[1:]
        assert digits.startswith(plan.country_code) and set(digits[len(plan.country_code):]) == {"0"}
        assert number_key(number, plan) == digits, plan


# -- finding 1: a folder on the way the user cannot enter -----------------------------------
def test_a_venv_behind_a_folder_the_asterisk_user_cannot_enter_is_named(make_setup, host):
    setup = make_setup("sqlite", install=False)
    _, agi_dir = place(setup, host)
    opt = os.path.join(host.root, "opt")
    os.chmod(opt, 0o700)
    try:
        # What Asterisk meets: as nobody, the script in agi-bin cannot be run at all.
        script = os.path.join(agi_dir, "vip_or_not")
        shell = subprocess.run(["sh", "-c", '"$0"', script], user=USER, group=GROUP, extra_groups=[],
                               capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert shell.returncode == 126 and "Permission denied" in shell.stderr, shell
        result = doctor(host, setup, agi_dir)
    finally:
        os.chmod(opt, 0o755)
    assert result.returncode == 1, result.stdout
    assert fixes(result) == ["FIX  nobody cannot enter folder %s on the way to %s: AGI() gets Permission denied "
                             "(exit 126); chmod o+x %s, or move it where nobody can reach" % (opt, script, opt)]
    assert lines(result.stderr) == ["vipsticky: 1 problem(s) to fix"]
    # Linked at agi-bin's path, the link itself looked fine to 0.1: the links are still "ok".
    assert sum(line.startswith("ok   %s/" % agi_dir) for line in lines(result.stdout)) == 3
    assert_nothing_left(setup)
    assert_healthy(doctor(host, setup, agi_dir))


def test_a_config_behind_a_folder_the_asterisk_user_cannot_enter_fails_every_call_open(make_setup, host):
    setup = make_setup("sqlite", install=False)
    folder, agi_dir = place(setup, host)
    etc = os.path.dirname(setup.path)
    os.chmod(etc, 0o750)  # root's group: nobody is not in it
    try:
        result = doctor(host, setup, agi_dir)
    finally:
        os.chmod(etc, 0o755)
    assert result.returncode == 1
    # The file's own mode is right ("ok ... readable by nobody"): only running as nobody shows it.
    assert fixes(result) == ["FIX  AGI(vip_or_not,+70000000000) as nobody fails open: cannot read config file %s: "
                             "Permission denied; nobody cannot enter folder %s on the way to %s: it cannot be "
                             "opened; chmod o+x %s, or move it where nobody can reach"
                             % (setup.path, etc, setup.path, etc)]


# -- finding 2: the address book's side table ----------------------------------------------
def test_a_dropped_address_book_side_table_fails_with_its_fix(make_setup, host):
    setup = make_setup("mariadb", ADDRESSBOOK, install=False)
    connection = server_connection(setup.mysql_database)
    with connection.cursor() as cursor:
        for statement in addressbook_ddl.VARIANTS["current"]:
            cursor.execute(statement)
    connection.close()
    _, agi_dir = place(setup, host, ADDRESSBOOK)
    installed = host.vipsticky(setup, "install-schema", "--addressbook")
    assert installed.returncode == 0, installed.stderr
    shown = assert_healthy(doctor(host, setup, agi_dir))
    assert "ok   address-book side table, function and triggers present, made for this [numbers] plan" in shown

    setup.query("DROP TABLE vipsticky_addressbook_keys")
    result = doctor(host, setup, agi_dir)
    assert result.returncode == 1
    assert fixes(result) == [
        "FIX  address-book side table or function missing (table vipsticky_addressbook_keys): run vipsticky "
        "install-schema --addressbook",
        "FIX  AGI(vip_or_not,+70000000000) as nobody fails open: Table '%s.vipsticky_addressbook_keys' doesn't "
        "exist (MySQL error 1146); run vipsticky install-schema --addressbook" % setup.mysql_database]

    assert host.vipsticky(setup, "install-schema", "--addressbook").returncode == 0
    assert_healthy(doctor(host, setup, agi_dir))
    # Another [numbers] plan: the function and the index were made for the old one.
    setup.rewrite(ADDRESSBOOK + "[numbers]\narea_code = 3842\n")
    result = doctor(host, setup, agi_dir)
    assert result.returncode == 1
    assert "ok   number plan cc=7 trunk=8 intl=810,00 national=10 area=3842 (test number +70000000000)" \
        in result.stdout
    assert fixes(result) == ["FIX  the address-book function vipsticky_number_key was made for another [numbers] "
                             "plan: run vipsticky install-schema --addressbook"]
    assert_nothing_left(setup)


# -- a missing privilege --------------------------------------------------------------------
def test_a_missing_privilege_is_named_with_the_grant_that_fixes_it(make_setup, host, request):
    setup = make_setup("mariadb", install=False)
    _, agi_dir = place(setup, host)  # the schema, installed as root
    admin = server_connection(setup.mysql_database)
    request.addfinalizer(admin.close)
    cursor = admin.cursor()
    cursor.execute("SELECT SUBSTRING_INDEX(USER(), '@', -1)")
    name, password = "vs_doc_%s" % uuid.uuid4().hex[:8], uuid.uuid4().hex
    account = "'%s'@'%s'" % (name, cursor.fetchone()[0])
    cursor.execute("CREATE USER %s IDENTIFIED BY '%s'" % (account, password))
    request.addfinalizer(lambda: cursor.execute("DROP USER IF EXISTS %s" % account))
    cursor.execute("GRANT SELECT ON %s.* TO %s" % (setup.mysql_database, account))
    setup.url = re.sub(r"^mysql://([^@/]*@)?", "mysql://%s:%s@" % (name, password), setup.url)
    setup.rewrite()

    result = doctor(host, setup, agi_dir)
    assert result.returncode == 1
    grant = "GRANT SELECT, INSERT, UPDATE, DELETE ON `%s`.* TO %s" % (setup.mysql_database, account)
    found = fixes(result)
    assert len(found) == 1, result.stdout
    assert found[0].startswith("FIX  AGI(sticky_route,remember,+70000000000) as nobody fails open: INSERT, "
                               "UPDATE command denied to user %s for table " % account), found
    assert found[0].endswith("numbers_remember` (MySQL error 1142); %s" % grant), found
    assert password not in result.stdout + result.stderr
    cursor.execute(grant)  # the fix, as printed
    assert_healthy(doctor(host, setup, agi_dir))


# -- astagidir from asterisk.conf -----------------------------------------------------------
ASTERISK_CONF = """\
; as Debian ships it: [directories] is a template, and Asterisk reads it all the same
[directories](!)
astetcdir => /etc/asterisk
astagidir {sep} {agi_dir}   ; where AGI() looks
[options]
verbose = 3
{options}
"""


def test_install_agi_and_doctor_read_astagidir_from_asterisk_conf(make_setup, host):
    setup = make_setup("sqlite", install=False)
    folder, _ = place(setup, host)
    for sep in ("=>", "="):
        agi_dir = tempfile.mkdtemp(prefix="agi-", dir=folder)
        os.chmod(agi_dir, 0o755)
        conf = os.path.join(folder, "asterisk.conf")
        with open(conf, "w") as handle:
            handle.write(ASTERISK_CONF.format(sep=sep, agi_dir=agi_dir, options=""))
        linked = host.vipsticky(setup, "install-agi", "--asterisk-conf", conf)
        assert linked.returncode == 0, linked.stderr
        assert sorted(os.listdir(agi_dir)) == sorted(NAMES)
        shown = assert_healthy(host.vipsticky(setup, "doctor", "--user", USER, "--asterisk-conf", conf,
                                              "--asterisk", os.path.join(folder, "no-asterisk")))
        assert "ok   %s/vip_or_not -> %s/bin/vip_or_not" % (agi_dir, host.venv) in shown
        assert any("ran from %s against" % agi_dir in line for line in shown), shown
    with open(conf, "w") as handle:
        handle.write(ASTERISK_CONF.format(sep="=>", agi_dir=agi_dir, options="runuser = asterisk"))
    result = host.vipsticky(setup, "doctor", "--user", USER, "--asterisk-conf", conf,
                            "--asterisk", os.path.join(folder, "no-asterisk"))
    assert fixes(result) == ["FIX  %s runs Asterisk as asterisk (runuser): rerun vipsticky doctor --user asterisk"
                             % conf]
    missing = host.vipsticky(setup, "install-agi", "--asterisk-conf", os.path.join(folder, "nope.conf"))
    assert missing.returncode == 1
    assert lines(missing.stderr) == ["vipsticky: %s does not exist: pass the asterisk.conf Asterisk reads "
                                     "(--asterisk-conf)" % os.path.join(folder, "nope.conf")]


def test_without_asterisk_conf_the_agi_dir_is_asterisks_default():
    if os.path.exists("/etc/asterisk/asterisk.conf"):
        pytest.skip("this host has an /etc/asterisk/asterisk.conf")
    assert read_asterisk_conf().agi_dir == "/var/lib/asterisk/agi-bin"
    if not os.path.exists("/var/lib/asterisk/agi-bin"):  # never link into a real agi-bin from a test
        refused = vipsticky(None, "install-agi")
        assert lines(refused.stderr) == ["vipsticky: /var/lib/asterisk/agi-bin is not a directory (is Asterisk "
                                         "installed? use --agi-dir)"]


# -- reading what a running Asterisk says (its output as Asterisk 22.10.1 prints it) ---------
DIALPLAN_SHOW = """\
[ Context 'vipsticky-inbound' created by 'pbx_config' ]
  's' =>            1. Answer()                                   [extensions.conf.example:24]
                    2. AGI(vip_or_not,${CALLERID(num)})           [extensions.conf.example:26]
                    3. AGI(sticky_route,lookup,${CALLERID(num)},support) [extensions.conf.example:29]
                    4. Set(DYNAMIC_FEATURES=vipsticky_unbind)     [extensions.conf.example:33]
                    6. Dial(${STICKY_AGENT},${STICKY_DIAL_TIMEOUT},U(vipsticky-refresh^${CALLERID(num)}^support^${STICKY_AGENT})) [extensions.conf.example:42]
     [queue]        8. Queue(support,r,,,,"sticky_route,remember,${CALLERID(num)},support") [extensions.conf.example:59]
                    9. Queue(${DYNAMIC},r)                        [extensions.conf.example:60]
                   10. AGI(sticky_route,lookup,${CALLERID(num)},sales) [extensions.conf.example:61]
                   11. AddQueueMember(other,PJSIP/x)              [extensions.conf.example:62]
  '_X.' =>          1. Goto(s,1)                                  [extensions.conf.example:22]
"""


def test_the_queues_named_in_the_dialplan():
    assert dialplan_queues(DIALPLAN_SHOW) == ["support", "sales"]


def test_core_show_settings():
    text = ("\nPBX Core settings\n-----------------\n  Version:                     22.10.1\n"
            "  User name and group:         asterisk/asterisk\n* Directories\n  -------------\n"
            "  Configuration directory:     /etc/asterisk\n  AGI Scripts directory:       /var/lib/asterisk/agi-bin\n")
    found = settings_of(text)
    assert found["Version"] == "22.10.1" and found["User name and group"] == "asterisk/asterisk"
    assert found["AGI Scripts directory"] == "/var/lib/asterisk/agi-bin"


def test_queues_conf_templates_and_includes(tmp_path):
    (tmp_path / "queues.conf").write_text(
        "[general]\npersistentmembers = yes\n\n[base](!)\nsetinterfacevar = yes ; comment\nstrategy=ringall\n"
        "[support](base)\ntimeout => 12\n#include \"queues-extra.conf\"\n")
    (tmp_path / "queues-extra.conf").write_text("[sales]\nstrategy = rrmemory\n[sales](+)\nsetinterfacevar=no\n"
                                                ";-- a block\nsetinterfacevar=yes\n--;\n")
    sections, templates = read_config(str(tmp_path / "queues.conf"))
    assert templates == {"base"}
    assert sections["support"] == {"setinterfacevar": "yes", "strategy": "ringall", "timeout": "12"}
    assert sections["sales"] == {"strategy": "rrmemory", "setinterfacevar": "no"}
    assert read_config(str(tmp_path / "missing.conf")) == ({}, set())
