"""From `pip install` to a first call without a git checkout (issue 12, point 1).

The sdist is built from a copy of the checkout, the wheel from the unpacked sdist (as
`python -m build` does); both carry the examples, the cron file, the SQL scripts and the
LICENSE, the sdist also its tests, which run from it. The wheel goes into a fresh venv
outside the checkout, made by the system's python3 (an interpreter Asterisk's user can
reach), and the README's install steps run against it as root, in temporary folders, for
an Asterisk that runs as another user (nobody), on SQLite and on MariaDB, up to
`vipsticky doctor` exiting 0 and a first VIP call.
"""
import configparser
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
import zipfile
from types import SimpleNamespace

import pytest

from agi_scripts.examples import EXAMPLES
from utils import server_connection

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = EXAMPLES + ("sql/mysql.sql", "sql/sqlite.sql", "LICENSE")
NOT_IN_THE_SDIST = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis")
ASTERISK_USER, ASTERISK_GROUP = "nobody", "nogroup"  # an existing user that is not root
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the install steps chown and run scripts as another user")


def version():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    return parser["metadata"]["version"]


def run(command, **options):
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **options)
    assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    return done


def repo_file(name):
    with open(os.path.join(REPO, *name.split("/")), "rb") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def built():
    """The sdist, the wheel built from it, and a fresh venv with the wheel installed, all in
    a folder outside the checkout that other users may enter (pytest's are 0700)."""
    root = tempfile.mkdtemp(prefix="vipsticky-packaging-")
    os.chmod(root, 0o755)
    try:
        source = os.path.join(root, "checkout")
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_IN_THE_SDIST))
        dist = os.path.join(root, "dist")
        run([sys.executable, "-c", "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])",
             dist], cwd=source)
        name = "vipsticky-%s" % version()
        sdist = os.path.join(dist, name + ".tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(os.path.join(root, "unpacked"))
        unpacked = os.path.join(root, "unpacked", name)
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", dist,
             unpacked])
        wheel = os.path.join(dist, name + "-py3-none-any.whl")
        venv = os.path.join(root, "opt", "vipsticky")
        for python in ("/usr/bin/python3", sys.executable):  # the first one that makes a venv
            if os.path.exists(python) and subprocess.run([python, "-m", "venv", "--without-pip", venv]).returncode == 0:
                break
        run([sys.executable, "-m", "pip", "--python", os.path.join(venv, "bin", "python"), "install",
             "--disable-pip-version-check", "-q", wheel])
        yield SimpleNamespace(root=root, sdist=sdist, wheel=wheel, unpacked=unpacked, venv=venv, name=name)
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
def install(built, url):
    """README "Installing into Asterisk", every path inside a temporary folder: /opt/vipsticky,
    /etc/asterisk, the agi-bin, /etc/cron.d and /var/lib/asterisk. Returns how to run
    vipsticky there and the folders."""
    top = tempfile.mkdtemp(prefix="vipsticky-host-", dir=built.root)
    os.chmod(top, 0o755)
    where = SimpleNamespace(**{name: os.path.join(top, name) for name in ("etc", "agi_bin", "cron_d", "lib",
                                                                         "examples")})
    for folder in (where.etc, where.agi_bin, where.cron_d, where.lib):
        os.makedirs(folder)
    shutil.chown(where.lib, ASTERISK_USER, ASTERISK_GROUP)  # /var/lib/asterisk belongs to Asterisk's user
    config = os.path.join(where.etc, "vipsticky.conf")
    env = {"PATH": "%s:/usr/bin:/bin" % os.path.join(built.venv, "bin"), "VIPSTICKY_CONFIG": config, "LANG": "C.UTF-8"}
    command = os.path.join(built.venv, "bin", "vipsticky")

    def vipsticky(*args):
        return run([command] + list(args), env=env).stdout

    assert vipsticky("--version") == "vipsticky %s\n" % version()
    written = vipsticky("examples", where.examples)
    for name in EXAMPLES:
        assert "wrote %s/%s" % (where.examples, name) in written
        with open(os.path.join(where.examples, name), "rb") as handle:
            assert handle.read() == repo_file(name), name
    shutil.copy(os.path.join(where.examples, "vipsticky.conf.example"), config)
    with open(config) as handle:
        text = handle.read()
    assert "\nurl = sqlite:////var/lib/asterisk/vipsticky.sqlite3\n" in text
    with open(config, "w") as handle:  # the [database] url, edited
        handle.write(text.replace("sqlite:////var/lib/asterisk/vipsticky.sqlite3", url(where)))
    shutil.chown(config, "root", ASTERISK_GROUP)
    os.chmod(config, 0o640)
    with open(os.path.join(where.etc, "asterisk.conf"), "w") as handle:  # what Asterisk's own says
        handle.write("[directories]\nastagidir => %s\n[options]\nrunuser = %s\n" % (where.agi_bin, ASTERISK_USER))
    vipsticky("install-schema", "--user", ASTERISK_USER)
    vipsticky("install-agi", "--asterisk-conf", os.path.join(where.etc, "asterisk.conf"))
    shutil.copy(os.path.join(where.examples, "cron", "vipsticky"), os.path.join(where.cron_d, "vipsticky"))
    doctor = subprocess.run([command, "doctor", "--user", ASTERISK_USER, "--asterisk-conf",
                             os.path.join(where.etc, "asterisk.conf")], env=env, capture_output=True, text=True,
                            timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "ok   a call works as %s" % ASTERISK_USER in doctor.stdout
    # A first VIP call, as Asterisk would make it.
    vipsticky("vip", "add", "+7 913 075-15-80", "--label", "Taxi Plus")
    assert "VIP=1" in vipsticky("try", "vip_or_not", "--callerid", "89130751580").splitlines()
    # The cron line, its paths adjusted as the comment says, runs as Asterisk's user.
    with open(os.path.join(where.cron_d, "vipsticky")) as handle:
        line = [line for line in handle if line.startswith("* * * * * ")][0]
    user, purge = line[len("* * * * * "):].strip().split(" ", 1)
    purge = purge.replace("/opt/vipsticky", built.venv).replace("/var/lib/asterisk", where.lib)
    assert user == "asterisk"
    run(["setpriv", "--reuid", ASTERISK_USER, "--regid", ASTERISK_GROUP, "--clear-groups", "sh", "-c", purge],
        env=env)
    return vipsticky


@needs_root
def test_readme_install_steps_from_the_wheel_on_sqlite(built):
    vipsticky = install(built, lambda where: "sqlite:///%s/vipsticky.sqlite3" % where.lib)
    assert "1 VIP number in table vip_numbers" in vipsticky("vip", "list")


@needs_root
def test_readme_install_steps_from_the_wheel_on_mariadb(built):
    """The database steps of README "The database", with the exact grants of the core."""
    name, password = "vs_wheel_%s" % uuid.uuid4().hex[:8], uuid.uuid4().hex
    connection = server_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@socket")
            socket_path = cursor.fetchone()[0]
            cursor.execute("CREATE DATABASE %s CHARACTER SET utf8mb4" % name)
            cursor.execute("CREATE USER '%s'@'localhost' IDENTIFIED BY '%s'" % (name, password))
            cursor.execute("GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON %s.* TO '%s'@'localhost'" % (name, name))
        vipsticky = install(built, lambda where: "mysql://%s:%s@localhost/%s?unix_socket=%s"
                            % (name, password, name, socket_path))
        assert "1 VIP number in table vip_numbers" in vipsticky("vip", "list")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS %s" % name)
            cursor.execute("DROP USER IF EXISTS '%s'@'localhost'" % name)
        connection.close()


# What install() above does, step by step, as the README's install block writes it: if the
# README changes a step, this list and install() must change with it.
README_STEPS = [
    "python3 -m venv /opt/vipsticky",
    "/opt/vipsticky/bin/pip install vipsticky-%s-py3-none-any.whl" % version(),
    "/opt/vipsticky/bin/vipsticky examples /root/vipsticky-examples && cd /root/vipsticky-examples",
    "cp vipsticky.conf.example /etc/asterisk/vipsticky.conf",
    "chown root:asterisk /etc/asterisk/vipsticky.conf && chmod 640 /etc/asterisk/vipsticky.conf",
    "/opt/vipsticky/bin/vipsticky install-schema",
    "/opt/vipsticky/bin/vipsticky install-agi",
    "cp cron/vipsticky /etc/cron.d/vipsticky",
    "/opt/vipsticky/bin/vipsticky doctor",
    "/opt/vipsticky/bin/vipsticky vip add '+7 913 075-15-80' --label 'Taxi Plus'",
    "/opt/vipsticky/bin/vipsticky try vip_or_not --callerid 89130751580",
]


def test_the_readme_install_block_is_the_one_these_tests_follow():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    section = readme[readme.index("## Installing into Asterisk"):]
    block = section[section.index("```sh\n") + 6:section.index("```", section.index("```sh\n") + 6)]
    steps = [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert steps == README_STEPS
