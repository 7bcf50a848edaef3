"""From the wheel to a first VIP call in a real Asterisk, the README's way (issue 12).

The wheel is built from the checkout's sdist and installed into a fresh venv outside the
checkout (tests/wheel_install.py, shared with tests/test_packaging.py). A real Asterisk
(real_asterisk.py) is already running, as another user (runuser = nobody, as Debian's runs
as asterisk), with nothing of vipsticky in it. Then, as README "Installing into Asterisk"
says, as root, with /etc/asterisk and /var/lib/asterisk being that Asterisk's folders and
/opt/vipsticky the fresh venv: the install block (the examples written by the installed
wheel, the config, the schema, `install-agi` reading astagidir from that Asterisk's
asterisk.conf, the cron file, a VIP added with the installed CLI), the examples put into
Asterisk's files and the reload commands, `doctor` asking the running Asterisk; then a call
from the VIP. Nothing comes from the checkout: not the scripts, not the examples, not the
CLI; the scripts run as nobody with Asterisk's environment (the venv's PATH and
VIPSTICKY_CONFIG, nothing else).
"""
import json
import os
import re
import shlex
from pathlib import Path

import pytest

from agi_scripts.scripts import NAMES
from wheel_install import (ASTERISK_GROUP, ASTERISK_USER, README_LOAD_STEPS, built_wheel, doctor, host, install,
                           mariadb_account, run)

from .conftest import unavailable
from .real_asterisk import MEMBERS, QUEUE, Asterisk, Unavailable, interface, prepare, sources

SOURCES, NO_ASTERISK = sources()
NUMBER, KEY = "8 (913) 075-15-80", "79130751580"  # the README's VIP, as a trunk might present it
VIP_PRIORITY = "10"  # vipsticky.conf.example's [vip] priority: what `vip add` without --priority gives
# The README's reload commands that belong to one dialplan flavour; the others are for both.
RELOAD_OF = {"asterisk -rx 'dialplan reload'": "conf", "asterisk -rx 'ael reload'": "ael"}


def runs():
    """One run per Asterisk build; the builds alternate dialplan flavour and database."""
    combos = []
    for index, source in enumerate(SOURCES):
        flavour, dialect = ("conf", "ael")[index % 2], ("sqlite", "mariadb")[index % 2]
        combos.append(pytest.param((source, flavour, dialect), id="%s-%s-%s" % (source.label, flavour, dialect)))
    return combos or [pytest.param(None, id="no-asterisk")]


@pytest.fixture(scope="module")
def built():
    """The sdist, the wheel built from it, and a fresh venv with the wheel installed."""
    with built_wheel() as built:
        yield built


@pytest.mark.parametrize("combo", runs())
def test_readme_from_the_wheel_to_a_first_vip_call_in_a_real_asterisk(combo, built, stopping):
    if combo is None:
        unavailable(NO_ASTERISK)
    if os.geteuid() != 0:
        unavailable("the README's install runs as root (chown, scripts as %s): run as root" % ASTERISK_USER)
    source, flavour, dialect = combo
    # /etc/asterisk, its agi-bin and /var/lib/asterisk: the running Asterisk's own folders.
    where = host(built, etc="asterisk/etc", agi_bin="asterisk/agi-bin", lib="asterisk/lib")
    try:
        build = prepare(source, Path(where.top) / "build")  # readable by nobody, unlike pytest's folders
        pbx = Asterisk(build, Path(where.top) / "asterisk", flavour, where.env, examples=None, scripts_bin=None,
                       run_as="%s:%s" % (ASTERISK_USER, ASTERISK_GROUP))
        pbx.start()
    except Unavailable as error:
        unavailable(str(error))
    try:
        settings = pbx.cli("core show settings")
        assert re.search(r"User name and group:\s+%s/%s\n" % (ASTERISK_USER, ASTERISK_GROUP), settings), settings
        assert "vipsticky_unbind" not in pbx.cli("features show")  # nothing of vipsticky yet

        if dialect == "sqlite":
            vipsticky = install(built, where, "sqlite:///%s/vipsticky.sqlite3" % where.lib, str(pbx.conf))
            first_call(built, where, pbx, flavour, vipsticky)
        else:
            with mariadb_account() as url:
                vipsticky = install(built, where, url, str(pbx.conf))
                first_call(built, where, pbx, flavour, vipsticky)
        problems = pbx.problems()
        assert not problems, "the Asterisk log of %s shows:\n%s" % (pbx.folder, "\n".join(problems))
    finally:
        pbx.stop(wait=False)
        stopping[:] = [other for other in stopping if not other.stopped()] + [pbx]


def first_call(built, where, pbx, flavour, vipsticky):
    """After the install block: the examples into Asterisk, the reload and doctor steps, a call."""
    agi_bin = Path(where.agi_bin)
    assert sorted(os.listdir(agi_bin)) == sorted(NAMES)
    for name in NAMES:  # install-agi linked the fresh venv's console scripts, nothing of the checkout
        assert os.readlink(agi_bin / name) == os.path.join(built.venv, "bin", name)
    package = run([os.path.join(built.venv, "bin", "python"), "-I", "-c",
                   "import agi_scripts; print(agi_scripts.__file__)"], env=where.env, cwd="/").stdout.strip()
    assert package.startswith(os.path.join(built.venv, "lib") + os.sep), package

    # The examples `vipsticky examples` wrote, put into Asterisk's files (queues.conf with the
    # test's Local agents as members), then the README's commands.
    pbx.load_examples(Path(where.examples))
    for step in README_LOAD_STEPS:
        if step.startswith("asterisk -rx "):
            if RELOAD_OF.get(step, flavour) == flavour:
                pbx.cli(shlex.split(step)[2])
        else:
            assert step == "/opt/vipsticky/bin/vipsticky doctor", step
            shown = doctor(built, where, str(pbx.conf), "--asterisk", str(pbx.build.binary))
    assert "ok   the running Asterisk %s finds AGI scripts in %s" % (pbx.build.version.split()[-1], agi_bin) in shown
    assert "ok   the * feature vipsticky_unbind is defined" in shown
    assert "ok   queue %s exists, setinterfacevar=yes" % QUEUE in shown

    call = pbx.call(NUMBER)
    assert pbx.ami.wait_for("QueueCallerJoin", Uniqueid=call.line_id)["Queue"] == QUEUE
    connect = pbx.connected(call)
    agent = connect["Interface"]
    assert agent in [interface(name) for name in MEMBERS] and connect["Queue"] == QUEUE, connect
    variables = pbx.variables(call.line_id)
    assert (variables["QUEUE_PRIO"], variables["VIP"], variables["VIP_LABEL"]) == (VIP_PRIORITY, "1", "Taxi Plus"), \
        variables
    assert pbx.remembered(call) == "stored"
    found = json.loads(vipsticky("lookup", NUMBER, "--json"))
    assert (found["key"], found["vip"], found["priority"]) == (KEY, True, int(VIP_PRIORITY)), found
    assert [(bound["agent"], bound["queue"]) for bound in found["bindings"]] == [(agent, QUEUE)], found
    warnings = [line for name in NAMES for line in pbx.logged("WARNING", "vipsticky %s: " % name)]
    assert not warnings, warnings  # a script that failed open, or found a config key it does not know
