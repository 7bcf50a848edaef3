"""vipsticky doctor against a running Asterisk: its AGI folder, the dialplan's queues, the * feature.

Issue 11: the queues the dialplan names exist and have setinterfacevar=yes, the * feature is
defined, and the call path is proven with the dialplan's queue; the shipped examples as the
harness loads them.
"""
import os
import subprocess

from utils import lines

from .real_asterisk import QUEUE, REPO, SCRIPTS_BIN


def doctor(scene):
    """doctor as root (the harness's Asterisk runs as root), asking that Asterisk."""
    pbx = scene.pbx
    return subprocess.run([str(SCRIPTS_BIN / "vipsticky"), "doctor", "--user", "root", "--asterisk",
                           str(pbx.build.binary), "--asterisk-conf", str(pbx.conf)],
                          env=scene.setup.env, capture_output=True, text=True, timeout=300)


def test_doctor_checks_the_running_asterisk(scene):
    pbx = scene.pbx
    os.chmod(scene.setup.path, 0o640)
    agi_dir = pbx.folder / "agi-bin"
    result = doctor(scene)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = lines(result.stdout)
    assert all(line.startswith("ok   ") for line in shown), shown
    assert "ok   the running Asterisk %s finds AGI scripts in %s" % (pbx.build.version.split()[-1], agi_dir) in shown
    assert "ok   the * feature vipsticky_unbind is defined" in shown
    assert "ok   queue %s exists, setinterfacevar=yes" % QUEUE in shown
    assert any(line.startswith("ok   a call works as root: ") and " ran from %s against " % agi_dir in line
               for line in shown), shown

    queues_conf = pbx.folder / "etc" / "queues.conf"
    text = queues_conf.read_text()
    queues_conf.write_text("\n".join(line for line in text.splitlines() if not line.startswith("setinterfacevar")))
    result = doctor(scene)
    assert result.returncode == 1
    assert [line for line in lines(result.stdout) if line.startswith("FIX")] == [
        "FIX  queue %s lacks setinterfacevar=yes in queues.conf: sticky_route remember cannot learn who answered; "
        "add it, then asterisk -rx 'module reload app_queue'" % QUEUE]

    queues_conf.write_text("[general]\n")
    pbx.rx("module reload app_queue")
    result = doctor(scene)
    assert result.returncode == 1
    assert [line for line in lines(result.stdout) if line.startswith("FIX")] == [
        "FIX  queue {q}, named in vipsticky-inbound, does not exist: add [{q}] from queues.conf.example to "
        "queues.conf, then asterisk -rx 'module reload app_queue'".format(q=QUEUE)]


def without_hangup_context(pbx):
    """Reload the running dialplan from the flavour's example without [vipsticky-hangup]."""
    etc = pbx.folder / "etc"
    if pbx.flavour == "conf":
        text = (REPO / "extensions.conf.example").read_text()
        start = text.index("\n[vipsticky-hangup]\n") + 1
        (etc / "stripped.conf").write_text(text[:start] + text[text.index("\n[", start) + 1:])
        (etc / "extensions.conf").write_text('#include "stripped.conf"\n#include "e2e-contexts.conf"\n')
        pbx.rx("dialplan reload")
    else:
        text = (REPO / "extensions.ael.example").read_text()
        start = text.index("context vipsticky-hangup {")
        (etc / "extensions.ael").write_text(text[:start] + text[text.index("\n};\n", start) + 4:])
        pbx.rx("ael reload")
    assert "There is no existence of 'vipsticky-hangup' context" in pbx.rx("dialplan show vipsticky-hangup",
                                                                            check=False).stdout


def test_doctor_names_the_hangup_context_min_talk_needs(start_scene):
    scene = start_scene("[sticky]\nmin_talk = 5\n")
    os.chmod(scene.setup.path, 0o640)
    result = doctor(scene)
    assert result.returncode == 0, result.stdout + result.stderr
    without_hangup_context(scene.pbx)
    result = doctor(scene)
    assert result.returncode == 1
    assert [line for line in lines(result.stdout) if line.startswith("FIX")] == [
        "FIX  context vipsticky-hangup is missing from the running dialplan, and [sticky] min_talk is set: "
        "sticky_route lookup pushes it as the caller's hangup handler, so no call would bind; load it from "
        "extensions.conf.example (or .ael), then asterisk -rx 'dialplan reload' (or 'ael reload')"]
