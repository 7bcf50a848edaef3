"""`vipsticky report` on a recorded day of calls (issue 14, Deliver 3), on SQLite and MariaDB.

The day is made by the installed scripts themselves, spawned as Asterisk runs them, each run
on the channel Asterisk would use (the caller's, or the agent's for Dial's U() subroutine);
`vipsticky purge` moves the spool into the events table and `report` sums it.
"""
import csv
import io
import json
import time

from agi_scripts.asterisk_standin import Asterisk, Peer
from agi_scripts.events import Outcome, line
from utils import lines, vipsticky

A, B, WITHHELD, D, E = "+79130751580", "+79131112233", "anonymous", "+79132223344", "+79133334455"
ALENA, BORIS = "PJSIP/alena", "PJSIP/boris"
DAY_INI = "[queue sales]\nmin_talk = 10\nbusy_wait = 1\n"


def noon_timezone():
    """A TZ in which it is about noon now: the day's calls cannot straddle midnight."""
    return "VST%+d" % (time.gmtime().tm_hour - 12)


def run(setup, script, args, call_id, asterisk=None, callerid=""):
    done = Peer(asterisk or Asterisk(devices={ALENA: "NOT_INUSE", BORIS: "NOT_INUSE"},
                                     queues={"support": {ALENA: False, BORIS: False},
                                             "sales": {ALENA: False, BORIS: False}})).run_script(
        script, args, callerid=callerid, process_env=setup.env, uniqueid=call_id)
    assert done.exit_code == 0 and done.stderr == "", done
    return done.variables


def record_the_day(setup):
    """Ten calls of a day and the doctor's test call, in the spool."""
    assert vipsticky(setup, "vip", "add", A).returncode == 0
    assert run(setup, "vip_or_not", [A], "c1")["VIP"] == "1"
    assert run(setup, "sticky_route", ["lookup", A, "support"], "c1")["STICKY_STATUS"] == "none"
    assert run(setup, "sticky_route", ["remember", A, "support", ALENA], "c1")["STICKY_STATUS"] == "stored"
    # A again: found, dialled directly; Dial's U() runs remember on the agent's channel.
    run(setup, "vip_or_not", [A], "c2")
    assert run(setup, "sticky_route", ["lookup", A, "support"], "c2")["STICKY_STATUS"] == "found"
    assert run(setup, "sticky_route", ["remember", A, "support", ALENA], "c2-agent")["STICKY_STATUS"] == "stored"
    # B: new, then bound to boris, who is on another call the next time; then B presses *.
    assert run(setup, "vip_or_not", [B], "c3")["VIP"] == "0"
    run(setup, "sticky_route", ["lookup", B, "support"], "c3")
    run(setup, "sticky_route", ["remember", B, "support", BORIS], "c3")
    run(setup, "vip_or_not", [B], "c4")
    boris_busy = Asterisk(devices={ALENA: "NOT_INUSE", BORIS: "INUSE"}, queues={"support": {ALENA: False,
                                                                                            BORIS: False}})
    assert run(setup, "sticky_route", ["lookup", B, "support"], "c4", boris_busy)["STICKY_STATUS"] == "unavailable"
    run(setup, "sticky_route", ["remember", B, "support", ALENA], "c4")
    run(setup, "vip_or_not", [B], "c5")
    assert run(setup, "sticky_route", ["lookup", B, "support"], "c5")["STICKY_STATUS"] == "found"
    run(setup, "sticky_route", ["remember", B, "support", ALENA], "c5-agent")
    assert run(setup, "delnum", [B], "c5")["DELNUM_STATUS"] == "deleted"
    # A withheld number.
    run(setup, "vip_or_not", [], "c6", callerid=WITHHELD)
    assert run(setup, "sticky_route", ["lookup", "", "support"], "c6", callerid=WITHHELD)["STICKY_STATUS"] == \
        "no-number"
    # Queue sales (min_talk 10): a wrong number of 3 seconds, then a conversation of 20.
    for call_id, seconds, verdict in (("c7", 3, "short"), ("c8", 20, "stored")):
        run(setup, "vip_or_not", [D], call_id)
        run(setup, "sticky_route", ["lookup", D, "sales"], call_id)
        answered = Asterisk(variables={"STICKY_TALK": "%d %s" % (time.time() - seconds, BORIS)})
        assert run(setup, "sticky_route", ["hangup", "79132223344", "sales"], call_id, answered) == \
            {"STICKY_STATUS": verdict}
    # E is bound to alena in sales; she stays on another call for all of busy_wait.
    assert vipsticky(setup, "bindings", "set", E, ALENA, "--queue", "sales").returncode == 0
    assert vipsticky(setup, "vip", "add", E).returncode == 0
    alena_busy = Asterisk(devices={ALENA: "INUSE"}, queues={"sales": {ALENA: False}})
    run(setup, "vip_or_not", [E], "c9")
    assert run(setup, "sticky_route", ["lookup", E, "sales"], "c9", alena_busy)["STICKY_STATUS"] == "busy"
    # A dialplan mistake: an error, counted as such.
    assert run(setup, "sticky_route", ["lookup", A, "bad queue"], "c10")["STICKY_STATUS"] == "error"
    # `vipsticky doctor`'s test call is no caller: left out of the report.
    run(setup, "vip_or_not", ["+70000000000"], "doctor")


def row(**counts):
    base = dict(calls=0, vip_calls=0, with_binding=0, sticky_hits=0, hit_rate=None, unavailable=0, busy=0,
                expired=0, waited=0, bindings_made=0, unbound=0, wrong_number=0, errors=0)
    base.update(counts)
    return base


def test_report_sums_a_recorded_day_per_queue(make_setup):
    for dialect in ("sqlite", "mariadb"):
        setup = make_setup(dialect, DAY_INI)
        setup.env["TZ"] = noon_timezone()
        record_the_day(setup)
        spool = setup.config.events.spool
        old = line("vip_or_not", "c0", Outcome("normal", "", "79130000000", False, 5), time.time() - 10 * 86400)
        with open(spool, "a") as handle:
            handle.write(old)  # a call of ten days ago
        purged = vipsticky(setup, "purge")
        assert purged.returncode == 0, purged.stderr
        assert lines(purged.stdout) == ["purged 0 expired bindings", "recorded 29 call events"]
        assert setup.config.events.spool and not _exists(spool)  # moved into the database

        done = vipsticky(setup, "report", "--json")
        assert done.returncode == 0, done.stderr
        today = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 3600 * int(noon_timezone()[3:])))
        support = row(day=today, queue="support", calls=6, vip_calls=2, with_binding=3, sticky_hits=2,
                      hit_rate=0.667, unavailable=1, bindings_made=5, unbound=1)
        sales = row(day=today, queue="sales", calls=3, vip_calls=1, with_binding=1, busy=1, hit_rate=0.0,
                    bindings_made=1, wrong_number=1)
        errors = row(day=today, queue="", errors=1)
        assert json.loads(done.stdout) == [errors, sales, support], dialect

        assert json.loads(vipsticky(setup, "report", "--json", "--queue", "sales").stdout) == [sales]
        assert json.loads(vipsticky(setup, "report", "--json", "--since", "30d").stdout)[0]["calls"] == 1  # c0
        table = lines(vipsticky(setup, "report").stdout)
        assert table[0].split() == ["day", "queue", "calls", "VIP", "bound", "hits", "rate", "unavail", "busy",
                                    "expired", "waited", "bound+", "unbound*", "wrong#", "errors"]
        assert table[3].split() == [today, "support", "6", "2", "3", "2", "67%", "1", "0", "0", "0", "5", "1", "0",
                                    "0"]
        parsed = list(csv.DictReader(io.StringIO(vipsticky(setup, "report", "--csv").stdout)))
        assert [(entry["queue"], entry["calls"], entry["hit_rate"]) for entry in parsed] == [
            ("", "0", ""), ("sales", "3", "0.0"), ("support", "6", "0.667")]

        # Older than [log] events_days: purge deletes it.
        setup.rewrite(DAY_INI + "[log]\nevents_days = 5\n")
        assert lines(vipsticky(setup, "purge").stdout) == ["purged 0 expired bindings",
                                                           "deleted 1 call event older than 5 days"]
        assert json.loads(vipsticky(setup, "report", "--json", "--since", "30d").stdout) == [errors, sales, support]


def _exists(path):
    try:
        open(path).close()
        return True
    except FileNotFoundError:
        return False


def test_report_refuses_a_bad_since_and_says_when_there_is_nothing(sqlite):
    bad = vipsticky(sqlite, "report", "--since", "3x")
    assert bad.returncode == 2 and "use a number and a unit: 30m, 12h, 7d or 2w" in bad.stderr
    empty = vipsticky(sqlite, "report")
    assert empty.returncode == 0 and empty.stdout == "no call events in the last 7d\n"
    both = vipsticky(sqlite, "report", "--json", "--csv")
    assert both.returncode == 2 and "choose one" in both.stderr
