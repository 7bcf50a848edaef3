"""From `pip install` to a first call without a git checkout (issue 12, point 1).

The sdist is built from a copy of the checkout, the wheel from the unpacked sdist (as
`python -m build` does); both carry the examples, the cron file, the SQL scripts and the
LICENSE, the sdist also its tests, which run from it. The wheel goes into a fresh venv
outside the checkout, made by the system's python3 (an interpreter Asterisk's user can
reach), and the README's install steps run against it as root, in temporary folders, for
an Asterisk that runs as another user (nobody), on SQLite and on MariaDB, up to a first VIP
call and `vipsticky doctor` exiting 0. (tests/wheel_install.py does it, shared with
tests/e2e/test_from_wheel.py, which goes on to a call in a real Asterisk.)
"""
import os
import sys
import tarfile
import zipfile

import pytest

from agi_scripts.examples import EXAMPLES
from wheel_install import (README_LOAD_STEPS, README_STEPS, REPO, built_wheel, doctor, host, install, mariadb_account,
                           readme_block, repo_file, run)

SHIPPED = EXAMPLES + ("sql/mysql.sql", "sql/sqlite.sql", "LICENSE")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the install steps chown and run scripts as another user")


@pytest.fixture(scope="module")
def built():
    """The sdist, the wheel built from it, and a fresh venv with the wheel installed."""
    with built_wheel() as built:
        yield built


def test_the_wheel_carries_the_shipped_files(built):
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        for name in SHIPPED:
            assert wheel.read("agi_scripts/shipped/" + name) == repo_file(name), name
        assert wheel.read("%s.dist-info/licenses/LICENSE" % built.name) == repo_file("LICENSE")
    assert not any(name.startswith("tests/") for name in names)
    assert b"MIT License" in repo_file("LICENSE") and b"the vipsticky authors" in repo_file("LICENSE")


def test_the_sdist_carries_the_tests_and_runs_them(built):
    with tarfile.open(built.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    tests = {os.path.relpath(os.path.join(folder, name), REPO)
             for folder, folders, files in os.walk(os.path.join(REPO, "tests"))
             for name in files if "__pycache__" not in folder and not name.endswith(".pyc")}
    assert {"tests/conftest.py", "tests/utils.py", "tests/unit/conftest.py", "tests/e2e/conftest.py"} <= tests
    missing = (tests | set(SHIPPED) | {"setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md"}) - names
    assert not missing, sorted(missing)
    ran = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_registry.py",
               "tests/unit/test_vip_or_not_handle.py"], cwd=built.unpacked)
    assert " passed" in ran.stdout and " failed" not in ran.stdout, ran.stdout


# -- the README's install steps, from the wheel ---------------------------------------------
def install_and_check(built, url):
    """The install block, then the README's doctor (the steps between, loading the examples
    into a running Asterisk, need one: tests/e2e/test_from_wheel.py)."""
    where = host(built)
    vipsticky = install(built, where, url(where))
    doctor(built, where, os.path.join(where.etc, "asterisk.conf"))
    return vipsticky


@needs_root
def test_readme_install_steps_from_the_wheel_on_sqlite(built):
    vipsticky = install_and_check(built, lambda where: "sqlite:///%s/vipsticky.sqlite3" % where.lib)
    assert "1 VIP number in table vip_numbers" in vipsticky("vip", "list")


@needs_root
def test_readme_install_steps_from_the_wheel_on_mariadb(built):
    """The database steps of README "The database", with the exact grants of the core."""
    with mariadb_account() as url:
        vipsticky = install_and_check(built, lambda where: url)
        assert "1 VIP number in table vip_numbers" in vipsticky("vip", "list")


def test_the_readme_install_block_is_the_one_these_tests_follow():
    assert readme_block("## Installing into Asterisk") == README_STEPS


def test_the_readme_reload_block_is_the_one_the_real_asterisk_test_follows():
    assert readme_block("Then put vipsticky into Asterisk's own files") == README_LOAD_STEPS
