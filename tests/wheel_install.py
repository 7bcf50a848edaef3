"""The package as an admin gets it, and README "Installing into Asterisk" followed with it.

Shared by tests/test_packaging.py (an Asterisk stand-in: an asterisk.conf, no Asterisk) and
tests/e2e/test_from_wheel.py (a real Asterisk):

- built_wheel(): the sdist built from a copy of the checkout, the wheel built from the
  unpacked sdist (as `python -m build` does), and a fresh venv outside the checkout, made by
  the system's python3 (an interpreter Asterisk's user can reach), with the wheel installed;
- host(): the folders of one Asterisk host (/etc/asterisk, agi-bin, /etc/cron.d,
  /var/lib/asterisk, the examples folder) inside a temporary folder, and the environment
  the README's commands run in there;
- install(): the README's install block (README_STEPS), as root, for an Asterisk that runs
  as another user (nobody); doctor(): its `vipsticky doctor` (README_LOAD_STEPS, last line);
- mariadb_account(): README "The database" on the shared MariaDB: a database and an
  account with exactly the grants the README gives, dropped afterwards.
"""
import configparser
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from contextlib import contextmanager
from types import SimpleNamespace

from agi_scripts.examples import EXAMPLES
from utils import server_connection

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_IN_THE_SDIST = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis")
ASTERISK_USER, ASTERISK_GROUP = "nobody", "nogroup"  # an existing user that is not root


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


@contextmanager
def built_wheel():
    """The sdist, the wheel built from it, and a fresh venv with the wheel installed, all in
    a folder outside the checkout that other users may enter (pytest's are 0700); removed
    afterwards."""
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


def host(built, **folders):
    """One Asterisk host's folders, inside a fresh folder under built.root that other users
    may enter: etc (/etc/asterisk), agi_bin (astagidir), cron_d (/etc/cron.d), lib
    (/var/lib/asterisk, Asterisk's user's) and examples (/root/vipsticky-examples, written by
    the install). folders: another place inside that folder for some of them, e.g.
    etc="asterisk/etc" for a real Asterisk's own. Also .top, .config
    (/etc/asterisk/vipsticky.conf) and .env, the environment of the README's commands: the
    venv's bin first on PATH and VIPSTICKY_CONFIG for that config file, nothing else."""
    top = tempfile.mkdtemp(prefix="host-", dir=built.root)
    os.chmod(top, 0o755)
    places = dict(etc="etc", agi_bin="agi_bin", cron_d="cron_d", lib="lib", examples="examples")
    places.update(folders)
    where = SimpleNamespace(top=top, **{name: os.path.join(top, place) for name, place in places.items()})
    for name in ("etc", "agi_bin", "cron_d", "lib"):
        os.makedirs(getattr(where, name), exist_ok=True)
    where.config = os.path.join(where.etc, "vipsticky.conf")
    where.env = {"PATH": "%s:/usr/bin:/bin" % os.path.join(built.venv, "bin"), "VIPSTICKY_CONFIG": where.config,
                 "LANG": "C.UTF-8"}
    return where


def command(built, *args):
    """The installed `vipsticky` command line."""
    return [os.path.join(built.venv, "bin", "vipsticky")] + list(args)


def install(built, where, url, asterisk_conf=None):
    """README "Installing into Asterisk", its install block, every path inside where's
    folders, for an Asterisk that runs as ASTERISK_USER: examples, the config with its
    [database] url edited to url, schema, AGI links into astagidir of asterisk_conf (by
    default a stand-in asterisk.conf in where.etc naming where.agi_bin and runuser), the cron
    file (its purge run as Asterisk's user, paths adjusted as its comment says), a VIP added
    and tried. Returns vipsticky(*args) -> stdout, the installed command in that environment."""
    def vipsticky(*args):
        return run(command(built, *args), env=where.env).stdout

    assert vipsticky("--version") == "vipsticky %s\n" % version()
    written = vipsticky("examples", where.examples)
    for name in EXAMPLES:
        assert "wrote %s/%s" % (where.examples, name) in written
        with open(os.path.join(where.examples, name), "rb") as handle:
            assert handle.read() == repo_file(name), name
    shutil.copy(os.path.join(where.examples, "vipsticky.conf.example"), where.config)
    with open(where.config) as handle:
        text = handle.read()
    assert "\nurl = sqlite:////var/lib/asterisk/vipsticky.sqlite3\n" in text
    text = text.replace("\nurl = sqlite:////var/lib/asterisk/vipsticky.sqlite3\n", "\nurl = %s\n" % url)
    with open(where.config, "w") as handle:  # the [database] url, edited; /var/lib/asterisk is where.lib
        handle.write(text.replace("/var/lib/asterisk/", where.lib + "/"))
    shutil.chown(where.config, "root", ASTERISK_GROUP)
    os.chmod(where.config, 0o640)
    shutil.chown(where.lib, ASTERISK_USER, ASTERISK_GROUP)  # /var/lib/asterisk belongs to Asterisk's user
    if asterisk_conf is None:  # what Asterisk's own says
        asterisk_conf = os.path.join(where.etc, "asterisk.conf")
        with open(asterisk_conf, "w") as handle:
            handle.write("[directories]\nastagidir => %s\n[options]\nrunuser = %s\n" % (where.agi_bin, ASTERISK_USER))
    vipsticky("install-schema", "--user", ASTERISK_USER)
    vipsticky("install-agi", "--asterisk-conf", asterisk_conf)
    shutil.copy(os.path.join(where.examples, "cron", "vipsticky"), os.path.join(where.cron_d, "vipsticky"))
    vipsticky("vip", "add", "+7 913 075-15-80", "--label", "Taxi Plus")
    assert "VIP=1" in vipsticky("try", "vip_or_not", "--callerid", "89130751580").splitlines()
    # The cron line, its paths adjusted as the comment says, runs as Asterisk's user.
    with open(os.path.join(where.cron_d, "vipsticky")) as handle:
        line = [line for line in handle if line.startswith("* * * * * ")][0]
    user, purge = line[len("* * * * * "):].strip().split(" ", 1)
    purge = purge.replace("/opt/vipsticky", built.venv).replace("/var/lib/asterisk", where.lib)
    assert user == "asterisk"
    run(["setpriv", "--reuid", ASTERISK_USER, "--regid", ASTERISK_GROUP, "--clear-groups", "sh", "-c", purge],
        env=where.env)
    return vipsticky


def doctor(built, where, asterisk_conf, *options):
    """The README's `vipsticky doctor` for Asterisk's user and asterisk_conf (more options:
    --asterisk BINARY); asserts exit 0, nothing to fix and the call proven as that user.
    Returns its lines."""
    done = subprocess.run(command(built, "doctor", "--user", ASTERISK_USER, "--asterisk-conf", asterisk_conf,
                                  *options), env=where.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = [line for line in done.stdout.splitlines() if line.strip()]
    assert all(line.startswith("ok   ") for line in shown), shown
    assert any(line.startswith("ok   a call works as %s" % ASTERISK_USER) for line in shown), shown
    return shown


@contextmanager
def mariadb_account():
    """README "The database" on the shared MariaDB: a database, an account for localhost with
    exactly the grants the README gives, the url for the unix socket (SELECT @@socket), as
    the README writes it. Both dropped afterwards."""
    name, password = "vs_wheel_%s" % uuid.uuid4().hex[:8], uuid.uuid4().hex
    connection = server_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@socket")
            socket_path = cursor.fetchone()[0]
            cursor.execute("CREATE DATABASE %s CHARACTER SET utf8mb4" % name)
            cursor.execute("CREATE USER '%s'@'localhost' IDENTIFIED BY '%s'" % (name, password))
            cursor.execute("GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON %s.* TO '%s'@'localhost'" % (name, name))
        yield "mysql://%s:%s@localhost/%s?unix_socket=%s" % (name, password, name, socket_path)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS %s" % name)
            cursor.execute("DROP USER IF EXISTS '%s'@'localhost'" % name)
        connection.close()


# What install() does, step by step, as the README's install block writes it (built_wheel()
# makes the venv and installs the wheel): if the README changes a step, this list and
# install() must change with it (tests/test_packaging.py checks the list against the README).
README_STEPS = [
    "python3 -m venv /opt/vipsticky",
    "/opt/vipsticky/bin/pip install vipsticky-%s-py3-none-any.whl" % version(),
    "/opt/vipsticky/bin/vipsticky examples /root/vipsticky-examples && cd /root/vipsticky-examples",
    "cp vipsticky.conf.example /etc/asterisk/vipsticky.conf",
    "chown root:asterisk /etc/asterisk/vipsticky.conf && chmod 640 /etc/asterisk/vipsticky.conf",
    "/opt/vipsticky/bin/vipsticky install-schema",
    "/opt/vipsticky/bin/vipsticky install-agi",
    "cp cron/vipsticky /etc/cron.d/vipsticky",
    "/opt/vipsticky/bin/vipsticky vip add '+7 913 075-15-80' --label 'Taxi Plus'",
    "/opt/vipsticky/bin/vipsticky try vip_or_not --callerid 89130751580",
]
# README, once the examples are in Asterisk's files: the running Asterisk reads them (one of
# the first two, by dialplan flavour), then doctor. tests/e2e/test_from_wheel.py runs them in
# a real Asterisk; tests/test_packaging.py only the doctor (no Asterisk runs there).
README_LOAD_STEPS = [
    "asterisk -rx 'dialplan reload'",
    "asterisk -rx 'ael reload'",
    "asterisk -rx 'module reload app_queue'",
    "asterisk -rx 'module reload features'",
    "/opt/vipsticky/bin/vipsticky doctor",
]


def readme_block(after):
    """The command lines of the README's first ```sh block after the text `after`, each
    without its comment."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    section = readme[readme.index(after):]
    start = section.index("```sh\n") + len("```sh\n")
    block = section[start:section.index("```", start)]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]
