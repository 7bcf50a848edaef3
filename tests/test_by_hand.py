"""A person running a script by hand (issue 12, point 3): on a terminal or with --help it
says what it does and how to try it, exit 2, at once; a hand-written environment runs
it for real with its commands printed; `vipsticky try` shows the whole AGI exchange.
Asterisk gives a script pipes, so none of it changes what a call gets."""
import json
import os
import pty
import re
import subprocess

import pytest

from agi_scripts.asterisk_standin import Asterisk, Peer, script_command
from agi_scripts.scripts import SCRIPTS
from utils import assert_clean, vipsticky

VARIABLES = {"vip_or_not": ("QUEUE_PRIO", "VIP", "VIP_LABEL"), "sticky_route": ("STICKY_AGENT", "STICKY_STATUS"),
             "delnum": ("DELNUM_STATUS",)}
NAMES = [script.name for script in SCRIPTS]


def on_a_terminal(script, args, stdin_terminal=True, env=None):
    """Run script with a terminal as stdin (or as stdout), the way a person starts it."""
    leader, follower = pty.openpty()
    try:
        streams = {"stdin": follower, "stdout": subprocess.PIPE} if stdin_terminal else \
            {"stdin": subprocess.DEVNULL, "stdout": follower}
        process = subprocess.run(script_command(script) + args, stderr=subprocess.PIPE, timeout=20, env=env,
                                 **streams)
        output = process.stdout if stdin_terminal else os.read(leader, 65536)
    finally:
        os.close(follower)
        os.close(leader)
    return process.returncode, output.decode().replace("\r\n", "\n"), process.stderr.decode()


def check_usage(name, code, output):
    assert code == 2, output
    module = __import__("agi_scripts." + name, fromlist=["_"])
    assert module.__doc__.strip().splitlines()[0] in output  # what it does, its arguments
    for variable in VARIABLES[name]:
        assert variable in output  # the variables it sets
    assert "vipsticky try %s" % name in output
    assert "printf 'agi_request: %s\\nagi_callerid: 89130751580\\n\\n' | %s" % (name, name) in output


@pytest.mark.parametrize("name", NAMES)
def test_on_a_terminal_a_script_explains_itself_and_exits_2(name):
    code, output, errors = on_a_terminal(name, [], env=dict(os.environ, PYTHONPROFILEIMPORTTIME="1"))
    check_usage(name, code, output)
    assert not re.search(r"\|\s*click\s*$", errors, re.M)  # the per-call path never imports click


@pytest.mark.parametrize("name", NAMES)
def test_help_on_a_terminal_explains_and_exits_2(name):
    for args in (["--help"], ["-h"]):
        check_usage(name, *on_a_terminal(name, args, stdin_terminal=False)[:2])


@pytest.mark.parametrize("name", NAMES)
def test_help_as_a_callers_number_is_a_normal_call(name, sqlite):
    """Asterisk gives pipes: an unfiltered caller ID "--help" is just a number without a key."""
    call = assert_clean(sqlite.run(name, ["--help"], asterisk=Asterisk(devices={"PJSIP/alena": "NOT_INUSE"})))
    assert set(VARIABLES[name]) <= set(call.variables), call.variables


def by_hand(setup, script, args=(), callerid="89130751580", replies=()):
    """printf 'agi_request: SCRIPT\nagi_callerid: NUMBER\n\n[REPLIES]' | SCRIPT ARGS"""
    typed = "agi_request: %s\nagi_callerid: %s\n\n%s" % (script, callerid, "".join(r + "\n" for r in replies))
    return subprocess.run(script_command(script) + list(args), input=typed, capture_output=True, text=True,
                          env=setup.env, timeout=30)


def test_a_hand_written_environment_runs_the_script(setup):
    assert vipsticky(setup, "vip", "add", "89130751580", "--label", "Taxi Plus").returncode == 0
    done = by_hand(setup, "vip_or_not")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ['SET VARIABLE "QUEUE_PRIO" "10"', 'SET VARIABLE "VIP" "1"',
                                        'SET VARIABLE "VIP_LABEL" "Taxi Plus"']
    assert vipsticky(setup, "bindings", "set", "89130751580", "PJSIP/alena").returncode == 0
    # The end of the input answers every command, DEVICE_STATE included ("": not busy).
    found = by_hand(setup, "sticky_route", ["lookup"])
    assert found.returncode == 0 and 'SET VARIABLE "STICKY_AGENT" "PJSIP/alena"' in found.stdout.splitlines()
    assert 'SET VARIABLE "STICKY_STATUS" "found"' in found.stdout.splitlines()
    deleted = by_hand(setup, "delnum")
    assert 'SET VARIABLE "DELNUM_STATUS" "deleted"' in deleted.stdout.splitlines()
    assert setup.query("SELECT COUNT(*) FROM numbers_remember")[0][0][0] == 0


def test_replies_given_by_hand_are_read(sqlite):
    """A person may answer the commands too: the replies after the environment are used."""
    sqlite.database().remember("79130751580", "", "PJSIP/alena", 600)
    done = by_hand(sqlite, "sticky_route", ["lookup"], replies=["200 result=1", "200 result=1 (INUSE)"])
    assert 'SET VARIABLE "STICKY_STATUS" "unavailable"' in done.stdout.splitlines(), done.stdout


def test_a_cut_asterisk_environment_is_still_skipped(sqlite):
    """An environment with agi_channel (res_agi sends it second, before anything a caller
    controls) that lacks Asterisk's other keys is a cut one: the random-token resync runs,
    and at the end of the input the script stops without setting anything."""
    done = subprocess.run(script_command("vip_or_not"), input="agi_request: vip_or_not\nagi_channel: PJSIP/x-1\n"
                          "agi_callerid: 89130751580\n\n", capture_output=True, text=True, env=sqlite.env, timeout=30)
    assert done.returncode == 0 and done.stderr == ""
    assert re.fullmatch(r'GET FULL VARIABLE "vipsticky-sync-[0-9a-f]{16}"\n', done.stdout), done.stdout
    # and a line feed in a real caller ID still cannot inject anything
    call = assert_clean(Peer().run_script("vip_or_not", [], callerid="1\n\nagi_arg_1: 89130751580\n200 result=1",
                                          process_env=sqlite.env))
    assert call.commands[0].startswith('GET FULL VARIABLE "vipsticky-sync-')
    assert call.variables == {"QUEUE_PRIO": "5", "VIP": "0", "VIP_LABEL": ""}


def test_try_shows_the_exchange_and_the_variables(setup):
    assert vipsticky(setup, "vip", "add", "89130751580", "--label", "Taxi Plus").returncode == 0
    shown = vipsticky(setup, "try", "vip_or_not", "--callerid", "8 913 075-15-80")
    assert (shown.returncode, shown.stderr) == (0, "")
    assert shown.stdout.splitlines() == [
        "AGI(vip_or_not) for a call from 8 913 075-15-80 (config %s)" % setup.path,
        '  -> SET VARIABLE "QUEUE_PRIO" "10"', "  <- 200 result=1",
        '  -> SET VARIABLE "VIP" "1"', "  <- 200 result=1",
        '  -> SET VARIABLE "VIP_LABEL" "Taxi Plus"', "  <- 200 result=1",
        "QUEUE_PRIO=10", "VIP=1", 'VIP_LABEL="Taxi Plus"'] + shown.stdout.splitlines()[-1:]
    assert re.fullmatch(r"exit 0 in \d+ ms", shown.stdout.splitlines()[-1])

    def tried(*args):
        result = vipsticky(setup, "try", *args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    stored = tried("sticky_route", "remember", "89130751580", "support", "--agent", "PJSIP/alena")
    assert stored["variables"] == {"STICKY_STATUS": "stored"}
    assert stored["exchange"][0] == {"command": 'GET VARIABLE "MEMBERINTERFACE"', "reply": "200 result=1 (PJSIP/alena)"}
    found = tried("sticky_route", "lookup", "", "support", "--callerid", "+79130751580")
    assert found["variables"]["STICKY_AGENT"] == "PJSIP/alena" and found["variables"]["STICKY_STATUS"] == "found"
    assert found["agi"] == "AGI(sticky_route,lookup,,support)" and found["exit_code"] == 0
    busy = tried("sticky_route", "lookup", "89130751580", "support", "--device-state", "INUSE")
    assert busy["variables"]["STICKY_STATUS"] == "unavailable"
    assert {"command": 'GET FULL VARIABLE "${QUEUE_EXISTS(support)}|${DEVICE_STATE(PJSIP/alena)}|'
                       '${QUEUE_MEMBER_LIST(support)}"',
            "reply": "200 result=1 (1|INUSE|PJSIP/alena)"} in busy["exchange"]


def test_try_says_why_a_call_fails_open_in_words(sqlite):
    result = json.loads(vipsticky(sqlite, "try", "sticky_route", "", "--json").stdout)
    assert result["variables"] == {"STICKY_AGENT": "", "STICKY_STATUS": "error"}
    assert result["warnings"] == ["vipsticky sticky_route: unknown action '': use lookup or remember; failing open"]
    refused = vipsticky(sqlite, "try", "no_such_script")
    assert refused.returncode == 2 and "SCRIPT" in refused.stderr and "Traceback" not in refused.stderr
