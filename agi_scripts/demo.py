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
from .events import ingest
from .report import daily, table
from .schema import install_schema
from .sticky_route import talk_note

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
[queue sales]
min_talk = 10
[log]
events_spool = {spool}
"""


def run_demo(echo, keep=False):
    workdir = tempfile.mkdtemp(prefix="vipsticky-demo-")
    config_path = os.path.join(workdir, "vipsticky.conf")
    with open(config_path, "w") as handle:
        handle.write(CONFIG.format(path=os.path.join(workdir, "demo.sqlite3"), ttl=DEMO_TTL,
                                   spool=os.path.join(workdir, "events.log")))
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
                        queues={"support": {"PJSIP/alena": False, "PJSIP/boris": False},
                                "sales": {"PJSIP/alena": False, "PJSIP/boris": False}})

    calls = iter(range(1, 1000))
    channel = ["demo-0"]  # the caller's channel: each call has its own, as in Asterisk

    def agi(script, *args, note="", uniqueid=None):
        call = Peer(asterisk).run_script(script, list(args), process_env=process_env,
                                         uniqueid=uniqueid or channel[0])
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
    echo("  queues support and sales: members PJSIP/alena, PJSIP/boris; bindings in support last %d s in this"
         " demo (86400 by default)" % DEMO_TTL)

    def inbound(title, number, queue="support"):
        echo("\n%s: %s calls" % (title, number))
        channel[0] = "demo-%d" % next(calls)
        asterisk.variables.clear()  # a new channel: nothing set on it yet
        vip = agi("vip_or_not", number)
        found = agi("sticky_route", "lookup", number, queue)
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
        note="<- Dial's U() subroutine when alena answers: clock restarts", uniqueid=channel[0] + "-agent")

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
    channel[0] = "demo-%d" % next(calls)
    asterisk.variables["MEMBERINTERFACE"] = "PJSIP/boris"
    agi("sticky_route", "remember", "12-34-56", "support")
    time.sleep(DEMO_TTL + 1.1)
    found = agi("sticky_route", "lookup", "3843123456", "support")
    _expect(found["STICKY_STATUS"] == "expired", found)
    echo("  -> expired bindings are never used, even before the cron purge runs")
    echo("  vipsticky purge: purged %d expired bindings" % database.purge())
    found = agi("sticky_route", "lookup", "3843123456", "support")
    _expect(found["STICKY_STATUS"] == "none", found)

    echo("\nQueue sales binds only a conversation of min_talk = 10 s (the hangup handler decides):")
    _talk(echo, agi, inbound, asterisk, "7. The caller of calls 1-5 calls sales", "PJSIP/alena", 120, "stored")
    echo("  -> a real conversation: bound to PJSIP/alena in sales")
    asterisk.devices["PJSIP/alena"] = "INUSE"
    _talk(echo, agi, inbound, asterisk, "8. Again, alena is busy; boris answers: a wrong number",
          "PJSIP/boris", 3, "short")
    asterisk.devices["PJSIP/alena"] = "NOT_INUSE"
    _vip, found = inbound("9. Once more", "+79130751580", "sales")
    _expect(found["STICKY_AGENT"] == "PJSIP/alena", found)
    echo("  -> the 3-second call did not rebind: the next call still goes to alena")

    stored, _skipped = ingest(database, config.events.spool)
    echo("\nvipsticky purge moved %d call events from the spool into the database; vipsticky report:" % stored)
    for line in table(daily(database, config.numbers, 3600)):
        echo("  " + line)
    echo("\ndemo finished: every script exited 0 with nothing on stderr")


def _talk(echo, agi, inbound, asterisk, title, agent, seconds, verdict):
    """A call to queue sales that agent answers and that lasts seconds (the hangup handler's
    view of it: remember noted when the agent answered)."""
    _vip, found = inbound(title, "+79130751580", "sales")
    asterisk.variables["MEMBERINTERFACE"] = agent
    pending = agi("sticky_route", "remember", "+79130751580", "sales",
                  note="<- Queue()'s AGI argument: noted, not bound yet")
    _expect(pending["STICKY_STATUS"] == "pending", pending)
    asterisk.variables["STICKY_TALK"] = talk_note(time.time() - seconds, agent)
    ended = agi("sticky_route", "hangup", "79130751580", "sales",
                note="<- the hangup handler, %d s later" % seconds)
    _expect(ended["STICKY_STATUS"] == verdict, ended)


def _expect(condition, variables):
    if not condition:
        raise RuntimeError("unexpected result: %r" % (variables,))
