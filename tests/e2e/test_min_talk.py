"""[sticky] min_talk in a real Asterisk (issue 14, Deliver 1): a conversation binds only once it
lasted min_talk seconds, decided by the caller's hangup handler (vipsticky-hangup), whoever hangs
up first; a shorter one, a * mid-call, or a database that is down leaves the binding as it was.
"""
import json
import time

from utils import Served

from .real_asterisk import MEMBERS, QUEUE, REPO, VIPSTICKY_INI, agent_phone, interface, poll

NUMBER, KEY = "+79130751580", "79130751580"
MIN_TALK = 3
INI = "[sticky]\nmin_talk = %d\n" % MIN_TALK


def hanging_up(combo) -> str:
    """Who hangs up first in this combination: the caller with the .conf dialplan, the agent
    with the .ael one, so that each side runs on both Asterisk versions and both databases."""
    return "caller" if combo[1] == "conf" else "agent"


def hung_up(pbx, call, side, connect):
    """Hang up the caller's handset or the agent's; wait for the hangup handler's verdict."""
    pbx.hangup(call.phone if side == "caller" else agent_phone(connect))
    verdict = poll(lambda: [event.get("Value") for event in pbx.ami.find("VarSet", Uniqueid=call.line_id,
                                                                        Variable="STICKY_STATUS")
                            if event.get("Value") in ("stored", "short", "unbound", "unanswered", "error")], 15)
    assert verdict, "the hangup handler did not run: %s" % pbx.variables(call.line_id)
    return verdict[-1]


def test_queue_conversation_binds_only_after_min_talk(start_scene, combo):
    side = hanging_up(combo)
    scene = start_scene(INI)
    pbx = scene.pbx
    short = pbx.call(NUMBER)
    connect = pbx.connected(short)
    assert pbx.remembered(short) == "pending"
    assert hung_up(pbx, short, side, connect) == "short"
    assert scene.bindings() == []

    long = pbx.call(NUMBER)
    connect = pbx.connected(long)
    time.sleep(MIN_TALK + 0.5)
    assert scene.bindings() == []  # nothing until the call ends
    assert hung_up(pbx, long, side, connect) == "stored"
    assert scene.agents_bound() == [(KEY, QUEUE, connect["Interface"])]
    # What the scripts in Asterisk recorded: two calls, one wrong number, one binding.
    (row,) = json.loads(scene.vipsticky("report", "--json"))
    assert (row["queue"], row["calls"], row["wrong_number"], row["bindings_made"], row["errors"]) == \
        (QUEUE, 2, 1, 1, 0)


def test_a_short_queue_call_leaves_the_previous_binding_exactly_as_it_was(start_scene):
    scene = start_scene(INI)
    pbx = scene.pbx
    scene.bind(NUMBER, "dima")  # dima is in no queue: the lookup finds the binding unavailable
    before = scene.bindings()
    call = pbx.call(NUMBER)
    connect = pbx.connected(call)
    assert connect["Interface"] in [interface(name) for name in MEMBERS]
    time.sleep(1.1)  # a second on the database clock: a rewrite would show in last_contact
    assert hung_up(pbx, call, "caller", connect) == "short"
    assert scene.bindings() == before


def test_direct_dial_refreshes_the_binding_only_after_min_talk(start_scene, combo):
    side = hanging_up(combo)
    scene = start_scene(INI)
    pbx = scene.pbx
    scene.bind(NUMBER, "alena")
    before = scene.bindings()
    short = pbx.call(NUMBER)
    dial = pbx.ami.wait_for("DialEnd", Uniqueid=short.line_id, timeout=10)
    assert dial["DialStatus"] == "ANSWER", dial
    assert pbx.wait_variable(dial["DestUniqueid"], "STICKY_STATUS") == "pending"  # U() on the agent's channel
    time.sleep(1.1)
    assert hung_up(pbx, short, side, dial) == "short"
    assert scene.bindings() == before

    long = pbx.call(NUMBER)
    dial = pbx.ami.wait_for("DialEnd", Uniqueid=long.line_id, timeout=10)
    time.sleep(MIN_TALK + 0.5)
    assert hung_up(pbx, long, side, dial) == "stored"
    (key, queue, agent, contact, expires), = scene.bindings()
    assert (key, queue, agent) == (KEY, QUEUE, interface("alena")) and contact > before[0][3]


def test_star_mid_call_is_not_undone_at_hangup(start_scene):
    scene = start_scene(INI)
    pbx = scene.pbx
    scene.bind(NUMBER, "dima")
    call = pbx.call(NUMBER)
    connect = pbx.connected(call)
    pbx.press(call.phone, "*")
    assert pbx.wait_variable(call.line_id, "DELNUM_STATUS") == "deleted"
    assert scene.bindings() == []
    time.sleep(MIN_TALK + 0.5)  # a conversation that would bind
    assert hung_up(pbx, call, "caller", connect) == "unbound"
    assert scene.bindings() == []


DEAD_URL = "mysql://vipsticky@127.0.0.1:1/vipsticky"  # nothing listens on port 1


def point_at(setup, url):
    """Rewrite the test's config with another database url; returns the one it had."""
    working, setup.url = setup.url, url
    setup.rewrite(VIPSTICKY_INI + INI, connect_timeout=1)
    return working


def test_database_down_at_answer_still_binds_at_hangup(start_scene):
    scene = start_scene(INI)
    pbx, setup = scene.pbx, scene.setup
    for agent in MEMBERS:
        pbx.pause(agent)
    call = pbx.call(NUMBER)
    assert pbx.wait_variable(call.line_id, "STICKY_STATUS") == "none"
    working = point_at(setup, DEAD_URL)
    pbx.pause("alena", False)
    connect = pbx.connected(call)
    assert pbx.remembered(call) == "pending"  # remember needs no database with min_talk
    point_at(setup, working)
    time.sleep(MIN_TALK + 0.5)
    assert hung_up(pbx, call, "caller", connect) == "stored"
    assert scene.agents_bound() == [(KEY, QUEUE, interface("alena"))]


def test_database_down_at_hangup_leaves_the_binding_and_says_so(start_scene):
    scene = start_scene(INI)
    pbx, setup = scene.pbx, scene.setup
    scene.bind(NUMBER, "dima")
    before = scene.bindings()
    call = pbx.call(NUMBER)
    connect = pbx.connected(call)
    time.sleep(MIN_TALK + 0.5)
    working = point_at(setup, DEAD_URL)
    assert hung_up(pbx, call, "caller", connect) == "error"
    assert poll(lambda: pbx.logged("WARNING", "vipsticky sticky_route:", "failing open"), 5)
    point_at(setup, working)
    assert scene.bindings() == before


def test_the_hangup_handler_over_fastagi(start_scene):
    """vipsticky-hangup with AGI(agi://...) to `vipsticky serve`, as a FastAGI site writes it:
    a hung-up channel's FastAGI session gets no HANGUP line and binds after min_talk."""
    scene = start_scene(INI)
    pbx = scene.pbx
    with Served(scene.setup) as served:
        fastagi = "AGI(agi://%s:%d/sticky_route,hangup,${ARG1},${ARG2})" % served.address
        etc = pbx.folder / "etc"
        if pbx.flavour == "conf":
            text = (REPO / "extensions.conf.example").read_text()
            (etc / "fastagi.conf").write_text(text.replace("AGI(sticky_route,hangup,${ARG1},${ARG2})", fastagi))
            (etc / "extensions.conf").write_text('#include "fastagi.conf"\n#include "e2e-contexts.conf"\n')
            pbx.rx("dialplan reload")
        else:
            text = (REPO / "extensions.ael.example").read_text()
            (etc / "extensions.ael").write_text(text.replace("AGI(sticky_route,hangup,${ARG1},${ARG2})", fastagi))
            pbx.rx("ael reload")
        assert "agi://" in pbx.cli("dialplan show vipsticky-hangup")
        call = pbx.call(NUMBER)
        connect = pbx.connected(call)
        time.sleep(MIN_TALK + 0.5)
        assert hung_up(pbx, call, "agent", connect) == "stored"
        assert scene.agents_bound() == [(KEY, QUEUE, connect["Interface"])]
        served.stop()
    assert served.log[-1] == "vipsticky serve: stopped" and len(served.log) == 2, served.log
