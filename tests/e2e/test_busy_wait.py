"""[sticky] busy_wait in a real Asterisk (issue 14, Deliver 2): a caller whose bound agent is on
another call waits for that agent (hearing ringing) up to busy_wait seconds, then goes to the
queue with their VIP priority; an agent who comes free in time is dialled directly.
"""
import json
import time

from .real_asterisk import QUEUE, interface, poll, seconds_between

NUMBER, KEY = "+79130751580", "79130751580"
OTHER = "+79001112233"  # another caller of alena's, who keeps her busy
NORMAL = "+79001112244"  # a caller with no binding, who waits in the queue
BUSY_WAIT = 4
INI = "[sticky]\nbusy_wait = %d\n" % BUSY_WAIT


def busy_with_another_call(scene):
    """alena talks to OTHER (bound to her: a direct Dial); returns that call."""
    pbx = scene.pbx
    scene.bind(OTHER, "alena")
    other = pbx.call(OTHER)
    assert pbx.ami.wait_for("DialEnd", Uniqueid=other.line_id, timeout=10)["DialStatus"] == "ANSWER"
    assert poll(lambda: pbx.device_state("alena") == "INUSE", 5)
    return other


def lookup_status(pbx, call, timeout):
    return pbx.ami.wait_for("VarSet", timeout, Uniqueid=call.line_id, Variable="STICKY_STATUS").get("Value")


def test_an_agent_who_comes_free_in_time_is_dialled_before_a_queued_caller(start_scene):
    scene = start_scene(INI)
    pbx = scene.pbx
    other = busy_with_another_call(scene)
    pbx.pause("boris")  # the queue has no one else: the queued caller waits for alena too
    queued = pbx.call(NORMAL)
    pbx.ami.wait_for("QueueCallerJoin", Uniqueid=queued.line_id)
    scene.bind(NUMBER, "alena")
    call = pbx.call(NUMBER)
    time.sleep(1.5)
    pbx.hangup(other.phone)
    assert lookup_status(pbx, call, BUSY_WAIT + 2) == "waited"
    dial = pbx.ami.wait_for("DialEnd", Uniqueid=call.line_id, timeout=10)
    assert dial["DialStatus"] == "ANSWER" and dial["DestChannel"].startswith("Local/alena@agents-"), dial
    assert not pbx.ami.find("QueueCallerJoin", Uniqueid=call.line_id)
    assert not pbx.ami.find("AgentConnect", Uniqueid=queued.line_id)  # still waiting in the queue
    (row,) = json.loads(scene.vipsticky("report", "--json"))
    assert (row["queue"], row["waited"], row["sticky_hits"], row["with_binding"]) == (QUEUE, 1, 2, 2)


def test_an_agent_still_busy_after_busy_wait_sends_the_caller_to_the_queue_with_its_priority(start_scene):
    scene = start_scene(INI)
    pbx = scene.pbx
    scene.vipsticky("vip", "add", NUMBER)
    busy_with_another_call(scene)
    pbx.pause("boris")
    queued = pbx.call(NORMAL)
    pbx.ami.wait_for("QueueCallerJoin", Uniqueid=queued.line_id)
    scene.bind(NUMBER, "alena")
    call = pbx.call(NUMBER)
    assert lookup_status(pbx, call, BUSY_WAIT + 3) == "busy"
    joined = pbx.ami.wait_for("QueueCallerJoin", Uniqueid=call.line_id)
    started = pbx.ami.find("Newchannel", Uniqueid=call.line_id)[0]
    assert BUSY_WAIT <= seconds_between(started, joined) < BUSY_WAIT + 2
    assert joined["Position"] == "1"  # a VIP: ahead of the caller who was queued before
    assert pbx.variables(call.line_id)["QUEUE_PRIO"] == "10"
    assert not pbx.ami.find("DialBegin", Uniqueid=call.line_id)
    pbx.pause("boris", False)
    assert pbx.connected(call)["Interface"] == interface("boris")
