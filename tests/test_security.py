"""Attacks on version 0.1 (issue 9) that must fail now: a caller ID that steers the call,
root's install-schema following a link, a config others can write, a purge lock anyone
can take, terminal escapes in CLI output, a password shown in an error.

Real subprocesses (the installed scripts and `vipsticky`), real MariaDB and SQLite. The
caller-ID injection is also driven through the real Asterisk in tests/e2e/.
"""
import os
import re
import shlex
import subprocess
import tempfile

import pytest

from utils import AGENT, AllIdle, assert_clean, assert_failed_open, assert_one_error_line, vipsticky
from agi_scripts.asterisk_standin import Asterisk
from agi_scripts.config import ConfigError, load

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUMBER = "79130751580"
FOREIGN = "Local/0900123456@outbound/n"  # a destination the caller chose: toll fraud if dialled
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="ownership and other users need root")


def queue_with(members, paused=()):
    """The stand-in's view of queue support with these members, every device idle."""
    return Asterisk(devices=AllIdle(), queues={"support": {member: member in paused for member in members}})


def agi_split(template, callerid):
    """What AGI() hands the script: ${CALLERID(num)} substituted, THEN split at commas."""
    return template.replace("${CALLERID(num)}", callerid).split(",")[1:]


def bindings(setup):
    rows, _ = setup.query("SELECT number, queue, agent FROM numbers_remember ORDER BY number, queue")
    return [tuple(row) for row in rows]


# -- 1. the caller ID cannot steer the call -------------------------------------------------
@pytest.mark.parametrize("template", [
    "sticky_route,remember,${CALLERID(num)},support",              # Queue()'s AGI argument
    "sticky_route,lookup,${CALLERID(num)},support",
    "vip_or_not,${CALLERID(num)}",
    "delnum,${CALLERID(num)}",
])
def test_injected_caller_id_through_an_unfiltered_dialplan_fails_open(setup, template):
    """Version 0.1 took the shifted arguments: remember stored FOREIGN as the agent and
    the next lookup answered found with it."""
    script = template.split(",")[0]
    call = setup.run(script, agi_split(template, NUMBER + ",," + FOREIGN), asterisk=queue_with([AGENT]))
    assert_failed_open(call, script)
    assert "arguments where" in call.warnings[0] and "FILTER" in call.warnings[0], call.warnings
    assert bindings(setup) == []


def test_an_agent_outside_the_patterns_is_never_stored(setup):
    call = assert_clean(setup.run("sticky_route", ["remember", NUMBER, "", FOREIGN]))
    assert call.variables == {"STICKY_STATUS": "bad-agent"}
    assert bindings(setup) == []


def test_a_stored_agent_outside_the_patterns_is_never_dialled(setup):
    """A binding written before the patterns existed (or by hand) is unavailable, even
    when the stand-in says that device is idle and a member of the queue."""
    database = setup.database()
    database.remember(NUMBER, "support", FOREIGN, 3600)
    database.close()
    call = assert_clean(setup.run("sticky_route", ["lookup", NUMBER, "support"], asterisk=queue_with([FOREIGN])))
    assert call.variables["STICKY_STATUS"] == "unavailable" and call.variables["STICKY_AGENT"] == ""


@pytest.mark.parametrize("agent, allowed", [
    ("PJSIP/alena", True), ("SIP/boris", True), ("IAX2/carol-2", True), ("Local/carol@agents/n", True),
    ("Local/carol@outbound/n", False), ("Local/carol@agents", False), ("PJSIP/alena@evil", False),
    ("PJSIP/a/b", False), ("IAX2/host:4569", False), ("DAHDI/g1/123", False), ("Local/a.b+c_d-e@agents/n", True),
])
def test_default_agent_patterns(setup, agent, allowed):
    call = assert_clean(setup.run("sticky_route", ["remember", NUMBER, "", agent]))
    assert call.variables == {"STICKY_STATUS": "stored" if allowed else "bad-agent"}


def test_per_queue_agent_patterns(make_setup):
    setup = make_setup("sqlite", "[sticky]\nagents = PJSIP/*\n[queue local]\nagents = Local/*@agents/n\n")
    remember = [("support", "PJSIP/alena", "stored"), ("support", "Local/carol@agents/n", "bad-agent"),
                ("local", "Local/carol@agents/n", "stored"), ("local", "PJSIP/alena", "bad-agent")]
    for queue, agent, status in remember:
        call = assert_clean(setup.run("sticky_route", ["remember", NUMBER, queue, agent]))
        assert call.variables == {"STICKY_STATUS": status}, (queue, agent)


@pytest.mark.parametrize("patterns", ["PJSIP/*, foo", "PJSIP/a b", "Local/*@agents/n, $(reboot)", "*"])
def test_a_bad_agent_pattern_is_a_config_error(tmp_path, patterns):
    path = tmp_path / "vipsticky.conf"
    path.write_text("[sticky]\nagents = %s\n" % patterns)
    with pytest.raises(ConfigError, match=r"\[sticky\] agents"):
        load(str(path))


# -- 3. root's install-schema never follows a link ------------------------------------------
def sqlite_setup(make_setup, folder):
    setup = make_setup("sqlite", install=False)
    setup.url = "sqlite:///%s" % os.path.join(folder, "vipsticky.sqlite3")
    setup.rewrite()
    return setup


@needs_root
@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", "-journal"])
@pytest.mark.parametrize("target_exists", [True, False])
def test_install_schema_refuses_a_planted_link(make_setup, tmp_path, suffix, target_exists):
    """0.1 chowned the link's target (a root file) to the Asterisk user, or created a
    root-chosen path owned by that user."""
    folder = tmp_path / "asterisk-owned"
    folder.mkdir()
    os.chown(folder, 65534, 65534)  # the Asterisk user (here nobody) owns the folder and plants the link
    secret = tmp_path / "root-secret"
    if target_exists:
        secret.write_text("")  # an empty file is an empty SQLite database: 0.1 went on and chowned it
        os.chmod(secret, 0o600)
    os.symlink(str(secret), str(folder / ("vipsticky.sqlite3" + suffix)))
    setup = sqlite_setup(make_setup, str(folder))
    result = vipsticky(setup, "install-schema", "--user", "nobody")
    assert_one_error_line(result, "planted link")
    assert "symbolic link" in result.stderr
    if target_exists:
        info = os.stat(secret)
        assert (info.st_uid, info.st_mode & 0o777, secret.read_text()) == (0, 0o600, "")
    else:
        assert not secret.exists()


@needs_root
def test_install_schema_hands_over_only_what_it_created(make_setup, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    setup = sqlite_setup(make_setup, str(folder))
    result = vipsticky(setup, "install-schema", "--user", "nobody")
    assert result.returncode == 0, result.stderr
    database_file = folder / "vipsticky.sqlite3"
    assert os.stat(database_file).st_uid == 65534
    assert os.stat(folder).st_uid == 0  # there before: not ours to give away
    assert "%s now owned by nobody" % database_file in result.stdout
    # A rerun finds the file there: it changes nobody's ownership of anything.
    os.chown(database_file, 0, 0)
    result = vipsticky(setup, "install-schema", "--user", "nobody")
    assert result.returncode == 0 and "now owned" not in result.stdout, result.stdout
    assert os.stat(database_file).st_uid == 0


# -- 6. the doctor flags a config others can write -----------------------------------------
@needs_root
@pytest.mark.parametrize("what, change, expected", [
    ("file", lambda path: os.chown(path, 65534, 0), "its owner (uid 65534)"),
    ("file", lambda path: (os.chown(path, 0, 65534), os.chmod(path, 0o660)), "its group (gid 65534)"),
    ("folder", lambda path: os.chmod(os.path.dirname(path), 0o777), "every user"),
    ("folder", lambda path: os.chown(os.path.dirname(path), 65534, 0), "its owner (uid 65534)"),
])
def test_doctor_flags_a_config_others_can_write(make_setup, tmp_path, what, change, expected):
    setup = make_setup("sqlite")
    folder = tempfile.mkdtemp(prefix="vipsticky-etc-")
    try:
        path = os.path.join(folder, "vipsticky.conf")
        os.rename(setup.path, path)
        setup.path, setup.env["VIPSTICKY_CONFIG"] = path, path
        os.chmod(path, 0o640)
        change(path)
        result = vipsticky(setup, "doctor", "--user", "root", "--agi-dir", str(tmp_path))
        target = path if what == "file" else folder
        assert result.returncode == 1
        assert "FIX  %s is writable by %s, not only by root" % (target, expected) in result.stdout, result.stdout
    finally:
        subprocess.run(["rm", "-rf", folder], check=True)


# -- 5. the cron purge's lock --------------------------------------------------------------
def cron_command():
    """(user, lock path) of the shipped cron line."""
    with open(os.path.join(REPO, "cron", "vipsticky")) as handle:
        line = next(line for line in handle if re.match(r"^[*\d]", line))
    words = shlex.split(line)
    user, command = words[5], words[6:]
    assert command[:2] == ["flock", "-n"], command
    return user, command[2]


def test_the_purge_lock_lives_in_the_purge_users_folder():
    user, lock = cron_command()
    assert user == "asterisk"
    # /var/lib/asterisk belongs to asterisk (Debian's asterisk package); /run/lock, /tmp,
    # /var/tmp and /dev/shm are writable by every user.
    assert os.path.dirname(lock) == "/var/lib/asterisk", lock


@needs_root
@pytest.mark.parametrize("folder_mode, owner, taken", [(0o1777, 0, True), (0o755, 1, False)])
def test_another_user_cannot_take_the_purge_lock_first(folder_mode, owner, taken):
    """As 0.1's /run/lock (mode 1777): `nobody` creates the lock file first, mode 600, and
    the purge user's `flock -n` fails on every run. In a folder of the purge user's own
    (here the system user daemon, uid 1) nobody cannot create it."""
    folder = tempfile.mkdtemp(prefix="vipsticky-lock-")  # pytest's tmp_path parents are 0700
    try:
        os.chown(folder, owner, owner)
        os.chmod(folder, folder_mode)
        lock = os.path.join(folder, "vipsticky-purge.lock")
        as_nobody = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
        squatter = subprocess.run(as_nobody + ["sh", "-c", "umask 077; : > %s" % shlex.quote(lock)],
                                  capture_output=True)
        assert (squatter.returncode == 0) == taken, squatter.stderr
        as_daemon = ["setpriv", "--reuid", "daemon", "--regid", "daemon", "--clear-groups"]
        purge = subprocess.run(as_daemon + ["flock", "-n", lock, "true"], capture_output=True)
        assert (purge.returncode != 0) == taken, purge.stderr
    finally:
        subprocess.run(["rm", "-rf", folder], check=True)


# -- 5. terminal escapes and passwords in CLI output ---------------------------------------
STEERING = ["\u202e", "\u2066", "\u200f", "\x9b", "\x1b", "\x85", "\x07"]


@pytest.mark.parametrize("char", STEERING)
def test_labels_and_queue_names_with_steering_characters_are_refused(setup, char):
    result = vipsticky(setup, "vip", "add", NUMBER, "--label", "Ivan%sPetrov" % char)
    assert_one_error_line(result, "label")
    assert "control or bidirectional" in result.stderr
    result = vipsticky(setup, "bindings", "set", NUMBER, AGENT, "--queue", "sup%sport" % char)
    assert_one_error_line(result, "queue")
    assert char not in result.stderr
    assert bindings(setup) == []


def test_stored_steering_characters_are_escaped_in_text_output(setup):
    """Labels also come from PHP Address Book and plain SQL: the CLI must not print them raw."""
    label = "Ivan\u202eveP\x9b[2J\x1b]0;owned\x07"
    connection = setup.connection()
    cursor = connection.cursor()
    placeholder = "?" if setup.dialect == "sqlite" else "%s"
    cursor.execute("INSERT INTO vip_numbers (number_key, priority, label) VALUES (%s, 30, %s)"
                   % (placeholder, placeholder), (NUMBER, label))
    connection.commit()
    connection.close()
    for args in (["vip", "list"], ["lookup", NUMBER]):
        result = vipsticky(setup, *args)
        assert result.returncode == 0, result.stderr
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", result.stdout), \
            repr(result.stdout)
        assert "\\u202e" in result.stdout and "\\x9b" in result.stdout  # shown, escaped
        assert "\\x1b" in result.stdout or "\\u001b" in result.stdout  # (lookup quotes the label as JSON)


@pytest.mark.parametrize("password", ["абв1", "pässwörd", "p\u0444"])
def test_a_password_never_shows_in_an_error(mariadb, password):
    """0.1: PyMySQL encoded the password as latin-1, and the error quoted the character
    it could not encode ('\\u0444')."""
    mariadb.url = re.sub(r"^mysql://([^:@/]*)(:[^@]*)?@", lambda match: "mysql://%s:%s@" % (match.group(1), password),
                         mariadb.url)
    mariadb.rewrite()
    result = vipsticky(mariadb, "purge")
    assert_one_error_line(result, "wrong password")
    shown = result.stderr
    assert "***" in shown
    for form in (password, password.encode("unicode_escape").decode("ascii")):
        assert form not in shown
    assert not any(char in shown or ("\\u%04x" % ord(char)) in shown for char in password if ord(char) > 127)
