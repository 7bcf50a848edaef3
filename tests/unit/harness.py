"""The unit layer's harness: the scripts' handle() run in this process, no AGI, no subprocess,
no MariaDB.

ChannelDouble has exactly the methods of agi_scripts.agi.Channel and answers them from an
Asterisk stand-in (channel variables, device states, queue members, sound files). Unit is one
test's temporary SQLite file and config; it reads and writes the tables with sqlite3 directly,
never through the code under test.
"""
import sqlite3

from agi_scripts import call
from agi_scripts.agi import Hangup
from agi_scripts.asterisk_standin import Asterisk
from agi_scripts.config import load
from agi_scripts.database import Database
from utils import install_into, write_config

SQLITE_NOW = "CAST((julianday('now') - 2440587.5) * 86400 AS INTEGER)"  # the database clock, epoch seconds


class ChannelDouble:
    """agi_scripts.agi.Channel in memory. Records every command in `commands` as a tuple
    (method, arguments...), what was set in `variables` (as the strings Asterisk keeps), the
    WARNINGs for the Asterisk log and the sounds played. With hangup_at=N the channel is gone from command N
    on (0: the first): that command and every later one raise Hangup, as Channel does."""

    def __init__(self, args=(), caller_id="", asterisk=None, hangup_at=None):
        self.args = list(args)
        self.env = {"agi_request": "unit", "agi_channel": "PJSIP/trunk-00000001", "agi_callerid": caller_id}
        self.asterisk = asterisk or Asterisk()
        self.hangup_at = hangup_at
        self.commands = []
        self.variables = {}
        self.warnings = []
        self.played = []
        self.log = None  # as Channel: warnings go to syslog unless answer() is given a log

    @property
    def caller_id(self) -> str:
        return self.env.get("agi_callerid", "")

    def _command(self, *command):
        if self.hangup_at is not None and len(self.commands) >= self.hangup_at:
            raise Hangup()
        self.commands.append(command)

    def get(self, name: str) -> str:
        self._command("get", name)
        return self.asterisk.variables.get(name, "")

    def evaluate(self, expression: str) -> str:
        self._command("evaluate", expression)
        return self.asterisk.evaluate(expression)

    def set(self, name: str, value) -> None:
        self._command("set", name, value)
        self.variables[name] = str(value)

    def warn(self, message: str) -> None:
        self._command("warn", message)
        self.warnings.append(message)

    def ring(self) -> None:
        self._command("ring")

    def play(self, sound: str) -> bool:
        self._command("play", sound)
        if sound not in self.asterisk.sounds:
            return False
        self.played.append(sound)
        return True


def idle(*agents, queue=None, paused=False, state="NOT_INUSE") -> Asterisk:
    """An Asterisk where the agents' devices are in `state` and, with a queue, they are its members."""
    return Asterisk(devices={agent: state for agent in agents},
                    queues={queue: {agent: paused for agent in agents}} if queue else {})


class Unit:
    """One test's SQLite database (schema installed) and config file; close() when done."""

    def __init__(self, folder, extra=""):
        self.path = str(folder / "vipsticky.conf")
        self.file = str(folder / "vipsticky.sqlite3")
        self.database = None
        self.configure(extra)
        install_into(self.config)

    def configure(self, extra="") -> None:
        """(Re)write the config file with extra INI text and use it from now on."""
        write_config(self.path, "sqlite:///%s" % self.file, 2, extra)
        self.config = load(self.path)
        self.close()
        self.database = Database(self.config.database)

    def close(self) -> None:
        if self.database is not None:
            self.database.close()

    # -- running a script ------------------------------------------------------------------
    def handle(self, script, args=(), caller_id="", asterisk=None) -> ChannelDouble:
        """script.handle() on a fresh channel; exceptions go to the test."""
        channel = ChannelDouble(args, caller_id, asterisk)
        script.handle(channel, channel.args, self.config, self.database)
        return channel

    def answer(self, script, args=(), caller_id="", asterisk=None, database=None, hangup_at=None, **options):
        """The call lifecycle (call.answer): (outcome, channel, log lines)."""
        channel = ChannelDouble(args, caller_id, asterisk, hangup_at)
        log = []
        outcome = call.answer(channel, script, self.config, database or self.database, log=log.append, **options)
        return outcome, channel, log

    # -- the tables, straight from the file ------------------------------------------------
    def sql(self, statement, params=()):
        connection = sqlite3.connect(self.file, isolation_level=None, timeout=10)
        try:
            return [tuple(row) for row in connection.execute(statement, params).fetchall()]
        finally:
            connection.close()

    def now(self) -> int:
        return int(self.sql("SELECT " + SQLITE_NOW)[0][0])

    def bind(self, key, queue, agent, last_contact=None, expires_at=None, ttl=86400) -> None:
        """A binding written into the table (live for ttl seconds unless times are given)."""
        now = self.now()
        last_contact = now if last_contact is None else last_contact
        self.sql("INSERT INTO numbers_remember (number, queue, agent, last_contact, expires_at) VALUES (?, ?, ?, ?, ?)",
                 (key, queue, agent, last_contact, now + ttl if expires_at is None else expires_at))

    def bindings(self):
        """(number, queue, agent, last_contact, expires_at) of every row, expired ones too."""
        return self.sql("SELECT number, queue, agent, last_contact, expires_at FROM numbers_remember "
                        "ORDER BY number, queue")

    def scopes(self, key):
        return [queue for number, queue, *_ in self.bindings() if number == key]

    def add_vip(self, key, priority, label) -> None:
        self.sql("INSERT INTO vip_numbers (number_key, priority, label) VALUES (?, ?, ?)", (key, priority, label))
