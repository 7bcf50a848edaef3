"""`vipsticky try`: one installed AGI script run as Asterisk runs it, on the real config, every exchange shown.

The script is spawned and spoken to by the Asterisk stand-in, which answers as an
Asterisk where every queue exists and every agent the script asks about is logged in
to it, not paused and in one device state (NOT_INUSE unless told otherwise).
"""
import os

from .asterisk_standin import Asterisk, Peer

DEVICE_STATES = ("NOT_INUSE", "INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD", "UNAVAILABLE", "INVALID",
                 "UNKNOWN")


class AssumedAsterisk(Asterisk):
    """The Asterisk `try` assumes; agent is ${MEMBERINTERFACE}, who answered the queue."""

    def __init__(self, agent="", device_state="NOT_INUSE"):
        super().__init__(variables={"MEMBERINTERFACE": agent} if agent else {})
        self.device_state = device_state
        self.asked = []  # the agents whose DEVICE_STATE the script asked: the queues' members

    def value(self, inner):
        name, _, rest = inner.partition("(")
        if name == "DEVICE_STATE":
            self.asked.append(rest[:-1])
            return self.device_state
        if name == "QUEUE_EXISTS":
            return "1"
        if name == "QUEUE_MEMBER_LIST":
            return ",".join(self.asked)
        if name == "QUEUE_MEMBER":
            return "0"  # not paused
        return super().value(inner)


class _Recorder(Peer):
    """The stand-in, keeping each command with the reply it got."""

    def __init__(self, asterisk):
        super().__init__(asterisk)
        self.exchange = []

    def reply(self, call, line):
        answer = super().reply(call, line)
        self.exchange.append({"command": line, "reply": answer})
        return answer


def try_script(script, args, callerid, config_path, agent="", device_state="NOT_INUSE") -> dict:
    """Run the installed script once; what Asterisk would have seen, as a dict (the JSON of `try --json`)."""
    peer = _Recorder(AssumedAsterisk(agent, device_state))
    call = peer.run_script(script, list(args), callerid=callerid,
                           process_env=dict(os.environ, VIPSTICKY_CONFIG=os.path.abspath(config_path)))
    return {"agi": "AGI(%s)" % ",".join([script] + list(args)), "callerid": callerid,
            "config": os.path.abspath(config_path), "exchange": peer.exchange, "variables": call.variables,
            "warnings": call.warnings, "exit_code": call.exit_code, "stderr": call.stderr,
            "milliseconds": round(call.elapsed * 1000)}


def lines(result) -> list:
    """The text of `try`: what Asterisk sent and got, then the variables."""
    shown = ["%s for a call from %s (config %s)" % (result["agi"], result["callerid"] or "no caller ID",
                                                    result["config"])]
    for step in result["exchange"]:
        shown += ["  -> " + step["command"], "  <- " + step["reply"].replace("\n", "\n     ")]
    shown += ["%s=%s" % (name, value if value and " " not in value else '"%s"' % value)
              for name, value in result["variables"].items()] or ["no variable set"]
    shown.append("exit %s in %d ms" % (result["exit_code"], result["milliseconds"]))
    return shown
