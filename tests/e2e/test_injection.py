"""Caller-ID argument injection through the shipped dialplans (issue 9, item 1), in a real
Asterisk: AGI() splits its arguments at commas after substitution, Queue() at commas outside
double quotes, Dial's U() at ^ and at the closing parenthesis. A caller who controls the
caller ID (a SIP user part may hold commas) must neither store an agent of their choosing
nor be put through to one.
"""
import pytest

from .real_asterisk import MEMBERS, QUEUE, interface

TARGET = "Local/0900123456@outbound/n"  # toll fraud: the test's outbound context logs a reach
NOT_A_MEMBER = interface("dima")  # an agent extension that exists but is in no queue
HOSTILE_CALLER_IDS = [
    pytest.param("79130751580,,%s" % TARGET, id="commas-outbound"),
    pytest.param("79130751580,,%s" % NOT_A_MEMBER, id="commas-other-agent"),
    pytest.param("79130751580,%s,%s" % (QUEUE, NOT_A_MEMBER), id="commas-queue-agent"),
    pytest.param('79130751580",%s,"' % TARGET, id="quotes"),
    pytest.param("79130751580^%s^%s" % (QUEUE, TARGET), id="caret"),
    pytest.param("79130751580)", id="parenthesis"),
]


@pytest.mark.parametrize("callerid", HOSTILE_CALLER_IDS)
def test_caller_id_cannot_choose_the_agent(scene, callerid):
    """Two calls with the same hostile caller ID: the first is answered in the queue, the
    second is routed by what the first stored. Only the agent who really answered may ever
    be stored, and nothing outside the queue's members is ever rung."""
    pbx = scene.pbx
    first = pbx.call(callerid)
    answered = pbx.connected(first)["Interface"]
    assert answered in [interface(name) for name in MEMBERS]
    pbx.remembered(first)
    assert {agent for _, _, agent in scene.agents_bound()} <= {answered}, scene.agents_bound()
    pbx.ended(first)

    second = pbx.call(callerid)
    pbx.ami.wait_for("BridgeEnter", Uniqueid=second.line_id)
    pbx.remembered(second)  # by Queue()'s AGI argument or Dial()'s U() subroutine
    queued = [event["Interface"] for event in pbx.ami.find("AgentConnect", Uniqueid=second.line_id)]
    assert {agent for _, _, agent in scene.agents_bound()} <= {answered} | set(queued), scene.agents_bound()
    # Only queue members ever rang: no outbound call, no agent outside the queue.
    assert pbx.destinations() - {"Local/call@e2e-callers"} <= {"Local/%s@agents" % name for name in MEMBERS}, \
        pbx.destinations()
    assert not pbx.logged("VERBOSE", "E2E OUTBOUND REACHED")
