"""`vipsticky demo`: a few calls replayed through the real AGI scripts.

Each script runs as a subprocess spoken to over AGI by the Asterisk stand-in (what Asterisk
does), on a throwaway SQLite database; what Asterisk would do next is printed.
"""
import os
import shutil
import tempfile
import time

from .asterisk_standin import Asterisk, Peer
from .config import load
from .database import Database
from .schema import install_schema

DEMO_TTL = 3  # seconds: short, so the demo can show a binding expiring
CONFIG = """\
[database]
url = sqlite:///{path}
[vip]
priority = 10
normal_priority = 5
[queue support]
ttl = {ttl}
dial_timeout = 20
"""


def run_demo(echo, keep=False):
    workdir = tempfile.mkdtemp(prefix="vipsticky-demo-")
    config_path = os.path.join(workdir, "vipsticky.conf")
    with open(config_path, "w") as handle:
        handle.write(CONFIG.format(path=os.path.join(workdir, "demo.sqlite3"), ttl=DEMO_TTL))
    config = load(config_path)
    database = Database(config.database)
    try:
        _replay(echo, config, database, dict(os.environ, VIPSTICKY_CONFIG=config_path))
    finally:
        database.close()
        if keep:
            echo("\nkept: %s (VIPSTICKY_CONFIG=%s)" % (workdir, config_path))
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _replay(echo, config, database, process_env):
    asterisk = Asterisk(devices={"PJSIP/alena": "NOT_INUSE", "PJSIP/boris": "NOT_INUSE"},
                        queues={"support": {"PJSIP/alena": False, "PJSIP/boris": False}})

    def agi(script, *args, note=""):
        call = Peer(asterisk).run_script(script, list(args), process_env=process_env)
        shown = " ".join('%s=%s' % (name, value if value and " " not in value else '"%s"' % value)
                         for name, value in call.variables.items())
        echo("  %-58s %-60s %4.0f ms%s" % ("AGI(%s)" % ",".join((script,) + args), shown,
                                           call.elapsed * 1000, "  " + note if note else ""))
        if call.exit_code != 0 or call.stderr or call.malformed:
            raise RuntimeError("%s misbehaved: exit %s, stderr %r" % (script, call.exit_code, call.stderr[:200]))
        return call.variables

    echo("vipsticky demo: throwaway SQLite database, every AGI script run as Asterisk runs it")
    for line in install_schema(database, config):
        echo("  install-schema: " + line)
    database.vip_add("79130751580", 10, "Taxi Plus corporate account")
    echo("  vip add +7 913 075-15-80 --priority 10 --label 'Taxi Plus corporate account'")
    echo("  queue support: members PJSIP/alena, PJSIP/boris; bindings last %d s in this demo (86400 by default)"
         % DEMO_TTL)

    def inbound(title, number):
        echo("\n%s: %s calls" % (title, number))
        vip = agi("vip_or_not", number)
        found = agi("sticky_route", "lookup", number, "support")
        return vip, found

    vip, found = inbound("1. First call", "8 (913) 075-15-80")
    _expect(found["STICKY_STATUS"] == "none", found)
    echo("  -> no sticky agent: Queue(support) with QUEUE_PRIO=%s, ahead of normal callers" % vip["QUEUE_PRIO"])
    asterisk.variables["MEMBERINTERFACE"] = "PJSIP/alena"
    stored = agi("sticky_route", "remember", "8 (913) 075-15-80", "support",
                 note="<- Queue()'s AGI argument when alena answers")
    _expect(stored["STICKY_STATUS"] == "stored", stored)
    echo("  -> bound to PJSIP/alena")

    vip, found = inbound("2. Second call", "+79130751580")
    _expect(found["STICKY_AGENT"] == "PJSIP/alena", found)
    echo("  -> Dial(%s,%s): straight to alena, no queue" % (found["STICKY_AGENT"], found["STICKY_DIAL_TIMEOUT"]))
    agi("sticky_route", "remember", "+79130751580", "support", "PJSIP/alena",
        note="<- Dial's U() subroutine when alena answers: clock restarts")

    asterisk.devices["PJSIP/alena"] = "INUSE"
    vip, found = inbound("3. Third call, alena is on another call", "89130751580")
    _expect(found["STICKY_STATUS"] == "unavailable", found)
    echo("  -> nobody waits %s s for a busy agent: Queue(support); boris answers" % found["STICKY_DIAL_TIMEOUT"])
    asterisk.variables["MEMBERINTERFACE"] = "PJSIP/boris"
    agi("sticky_route", "remember", "89130751580", "support")
    echo("  -> bound to PJSIP/boris now")
    echo("  the caller presses * during the call (features.conf runs delnum on the caller's channel):")
    unbound = agi("delnum", "89130751580")
    _expect(unbound["DELNUM_STATUS"] == "deleted", unbound)
    echo("  -> binding gone, the caller heard a beep, the call goes on")
    asterisk.devices["PJSIP/alena"] = "NOT_INUSE"
    vip, found = inbound("4. Fourth call", "9130751580")
    _expect(found["STICKY_STATUS"] == "none", found)
    echo("  -> Queue(support) again: whoever answers becomes the new agent")

    vip, found = inbound("5. A withheld number", "anonymous")
    _expect(vip["QUEUE_PRIO"] == "5" and found["STICKY_STATUS"] == "no-number", found)
    agi("sticky_route", "remember", "anonymous", "support")
    echo("  -> normal priority, never bound: withheld callers do not share one agent")

    echo("\n6. A local caller 12-34-56 (= +7 3843 12-34-56) is answered by boris, then %d s pass" % DEMO_TTL)
    agi("sticky_route", "remember", "12-34-56", "support")
    time.sleep(DEMO_TTL + 1.1)
    found = agi("sticky_route", "lookup", "3843123456", "support")
    _expect(found["STICKY_STATUS"] == "expired", found)
    echo("  -> expired bindings are never used, even before the cron purge runs")
    echo("  vipsticky purge: purged %d expired bindings" % database.purge())
    found = agi("sticky_route", "lookup", "3843123456", "support")
    _expect(found["STICKY_STATUS"] == "none", found)
    echo("\ndemo finished: every script exited 0 with nothing on stderr")


def _expect(condition, variables):
    if not condition:
        raise RuntimeError("unexpected result: %r" % (variables,))
