"""vipsticky doctor, install-agi and the SQLite file handed to the Asterisk user.

The tests play the Asterisk user with the system user `nobody` (uid 65534), which
every Debian machine has; ownership checks need root, as install-schema on a real
Asterisk host is run.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from agi_scripts.asterisk_standin import Peer
from utils import assert_clean, lines, vipsticky

USER = "nobody"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="ownership changes need root")


@needs_root
def test_install_schema_as_root_hands_the_sqlite_file_to_the_asterisk_user(make_setup, tmp_path):
    setup = make_setup("sqlite", install=False)
    folder = tmp_path / "new-folder"
    setup.url = "sqlite:///%s" % (folder / "calls.sqlite3")
    setup.rewrite()
    result = vipsticky(setup, "install-schema", "--user", USER)
    assert result.returncode == 0, result.stderr
    uid = int(subprocess.check_output(["id", "-u", USER]))
    assert os.stat(folder / "calls.sqlite3").st_uid == uid
    assert os.stat(folder).st_uid == uid  # we made the folder, so SQLite's -wal/-shm can be created
    assert "now owned by nobody" in result.stdout


@needs_root
def test_a_call_as_the_asterisk_user_can_write_after_a_root_install(make_setup):
    """The failure the doctor exists for: a root-owned file makes every binding fail open."""
    as_user = ["setpriv", "--reuid", USER, "--regid", "nogroup", "--clear-groups"]
    script = os.path.join(os.path.dirname(sys.executable), "sticky_route")
    if subprocess.run(as_user + [script, "--help"], input="", capture_output=True).returncode not in (0,):
        pytest.skip("this checkout's venv is not readable by %s" % USER)
    setup = make_setup("sqlite", install=False)
    folder = tempfile.mkdtemp(prefix="vipsticky-asterisk-")  # tmp_path's parents are 0700
    try:
        os.chmod(folder, 0o755)
        setup.url = "sqlite:///%s/data/calls.sqlite3" % folder
        setup.path = os.path.join(folder, "vipsticky.conf")
        setup.env["VIPSTICKY_CONFIG"] = setup.path
        setup.rewrite()
        os.chmod(setup.path, 0o644)
        assert vipsticky(setup, "install-schema", "--user", USER).returncode == 0
        call = Peer().run_script("sticky_route", ["remember", "89130751580", "", "PJSIP/alena"],
                                 process_env=setup.env, command=as_user + [script])
        assert_clean(call)
        assert call.variables == {"STICKY_STATUS": "stored"}
    finally:
        shutil.rmtree(folder)


def test_doctor_on_mariadb_finds_a_missing_schema_and_missing_triggers(make_setup, tmp_path):
    setup = make_setup("mariadb", install=False)
    os.chmod(setup.path, 0o640)
    result = vipsticky(setup, "doctor", "--user", "root", "--agi-dir", str(tmp_path))
    assert result.returncode == 1
    assert "schema version None" in result.stdout and "run vipsticky install-schema" in result.stdout

    setup.rewrite("[vip]\nsource = addressbook\n")
    os.chmod(setup.path, 0o640)
    assert vipsticky(setup, "install-schema").returncode == 0
    result = vipsticky(setup, "doctor", "--user", "root", "--agi-dir", str(tmp_path))
    assert "address-book triggers missing" in result.stdout


def test_doctor_with_an_unknown_user_says_so(setup, tmp_path):
    result = vipsticky(setup, "doctor", "--user", "no-such-user-xyz", "--agi-dir", str(tmp_path))
    assert result.returncode == 1
    assert "no system user no-such-user-xyz" in result.stdout


def test_install_agi_links_and_refuses_to_replace_a_file(setup, tmp_path):
    agi_dir = tmp_path / "agi"
    agi_dir.mkdir()
    first = vipsticky(setup, "install-agi", "--agi-dir", str(agi_dir))
    assert first.returncode == 0
    for name in ("vip_or_not", "sticky_route", "delnum"):
        assert os.path.realpath(agi_dir / name) == os.path.realpath(
            os.path.join(os.path.dirname(sys.executable), name))
    again = vipsticky(setup, "install-agi", "--agi-dir", str(agi_dir))
    assert again.returncode == 0 and again.stdout.count("already links") == 3
    os.unlink(agi_dir / "delnum")
    (agi_dir / "delnum").write_text("#!/bin/sh\n")
    refused = vipsticky(setup, "install-agi", "--agi-dir", str(agi_dir))
    assert refused.returncode == 1
    assert lines(refused.stderr) == ["vipsticky: %s exists and is not a link: move it away, then rerun"
                                     % (agi_dir / "delnum")]
    missing = vipsticky(setup, "install-agi", "--agi-dir", str(tmp_path / "nope"))
    assert missing.returncode == 1 and len(lines(missing.stderr)) == 1
