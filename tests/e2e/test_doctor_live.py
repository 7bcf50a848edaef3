"""vipsticky doctor against a running Asterisk: its AGI folder, the dialplan's queues, the * feature.

Issue 11: the queues the dialplan names exist and have setinterfacevar=yes, the * feature is
defined, and the call path is proven with the dialplan's queue; the shipped examples as the
harness loads them.
"""
import os
import subprocess

from utils import lines

from .real_asterisk import QUEUE, SCRIPTS_BIN


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
