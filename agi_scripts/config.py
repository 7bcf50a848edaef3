"""One INI file -> one immutable Config.

The file is /etc/asterisk/vipsticky.conf unless VIPSTICKY_CONFIG names another one.
A missing file is not an error: every key has a working default (SQLite under
/var/lib/asterisk). Anything present but wrong raises ConfigError with one line
that names the section and key; a password never appears in it.
"""
import os

from .records import record
from .rules import DIGITS, WORD_CHARACTERS, printable, valid_agent_pattern, valid_queue

DEFAULT_PATH = "/etc/asterisk/vipsticky.conf"
DEFAULT_DATABASE_URL = "sqlite:////var/lib/asterisk/vipsticky.sqlite3"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
VIP_SOURCES = ("table", "addressbook", "both")
CONNECT_TIMEOUT = 2.0  # seconds
BREAKER_SECONDS = 5  # seconds a database server found unreachable is not tried again by calls
TABLE_PREFIX_LENGTH = 32
SYSLOG_FACILITIES = ("daemon", "user") + tuple("local%d" % number for number in range(8))
SOUND_NAME_CHARACTERS = WORD_CHARACTERS | frozenset("/.-")
# mysql://[user[:password]@]host[:port][,host[:port]...]/database[?unix_socket=/path]; a
# password holding @ / ? # or % is written %-encoded. Several hosts (a Galera cluster, a
# primary and its stand-by) are tried in order; a host without a port uses 3306. An IPv6
# host is written in brackets: [::1]:3306.
INVALID_MYSQL_URL = "[database] url is not a valid mysql://user:pass@host:port/database URL"
IPV6_CHARACTERS = DIGITS | frozenset("ABCDEFabcdef:.")

# Bounds of the numeric settings (also what the CLI accepts for a priority).
PRIORITY_LIMITS = (-1000000, 1000000)
TTL_LIMITS = (1, 10 * 365 * 86400)
DIAL_TIMEOUT_LIMITS = (1, 600)
MIN_TALK_LIMITS = (0, 3600)
BUSY_WAIT_LIMITS = (0, 600)
EVENTS_DAYS_LIMITS = (1, 3660)

# The settings are records (records.py): immutable, and cheap to define, which matters on
# a path that runs once per call (frozen dataclasses cost about 30 times more).


class ConfigError(Exception):
    """A config value that cannot be used; the message is one line for a human."""


class DatabaseSettings(record("DatabaseSettings", (
        "dialect url connect_timeout ssl ssl_ca host port user password database unix_socket path breaker_seconds "
        "hosts"),
        defaults=(CONNECT_TIMEOUT, False, None, None, 3306, None, None, None, None, None, BREAKER_SECONDS, ()))):
    """dialect is mysql or sqlite; url may hold a password: print safe_url, never url.
    host and port are the first (or only) server; hosts holds every (host, port) of the
    url in order, the first included."""
    __slots__ = ()

    @property
    def servers(self) -> tuple:
        """((host, port), ...) to try in order: hosts, else the one host."""
        return self.hosts or ((self.host, self.port),)

    def __repr__(self):
        return "DatabaseSettings(%s)" % self.safe_url

    __str__ = __repr__

    @property
    def safe_url(self) -> str:
        """The URL with its password replaced by ***, fit for any output."""
        if self.password is None:
            return self.url
        scheme, rest = self.url.split("://", 1)
        credentials, _, location = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return "%s://%s:***@%s" % (scheme, user, location)


NumberPlan = record("NumberPlan", "country_code trunk_prefix international_prefixes national_length area_code",
                    defaults=("7", "8", ("810", "00"), 10, "3843"))

# groups: ((group name, priority), ...) in file order
VipSettings = record("VipSettings", (
    "source priority normal_priority groups addressbook_domain_id addressbook_table_prefix"),
    defaults=("table", 10, 5, (), None, ""))

# agents: the patterns an agent interface must match to be stored or dialled (rules.agent_allowed)
# min_talk: seconds a conversation must last before it binds (0: binds when answered)
# busy_wait: seconds a caller waits for a bound agent who is on another call (0: to the queue at once)
QueueSettings = record("QueueSettings", "ttl dial_timeout agents min_talk busy_wait")


class StickySettings(record("StickySettings",
                            "ttl dial_timeout legacy_technology unbind_sound queues agents min_talk busy_wait",
                            defaults=(86400, 20, "SIP", "beep", (),
                                      ("PJSIP/*", "SIP/*", "IAX2/*", "Local/*@agents/n"), 0, 0))):
    """queues: ((name, QueueSettings), ...) from the [queue NAME] sections."""
    __slots__ = ()

    @property
    def uses_min_talk(self) -> bool:
        """min_talk is set for some queue: the hangup handler decides bindings there."""
        return bool(self.min_talk) or any(settings.min_talk for _name, settings in self.queues)

    def for_queue(self, queue: str) -> QueueSettings:
        for name, settings in self.queues:
            if name == queue:
                return settings
        return QueueSettings(self.ttl, self.dial_timeout, self.agents, self.min_talk, self.busy_wait)


# allow: client addresses or networks (ipaddress notation) that may use `vipsticky serve`
FastagiSettings = record("FastagiSettings", "allow", defaults=((),))

# enabled: each script run appends its outcome to the spool file; purge moves the lines into
# the events table and deletes events older than days (vipsticky report reads them)
EventSettings = record("EventSettings", "enabled spool days",
                       defaults=(True, "/var/lib/asterisk/vipsticky-events.log", 90))

# warnings: what a call logs about the file (unknown names) while it uses the rest
Config = record("Config", "database numbers vip sticky syslog_facility path fastagi warnings events",
                defaults=(NumberPlan(), VipSettings(), StickySettings(), "daemon", None, FastagiSettings(), (),
                          EventSettings()))

# Every section and key the file may hold ("queue" stands for the [queue NAME] sections).
KNOWN = {
    "database": ("url", "connect_timeout", "ssl", "ssl_ca", "breaker_seconds"),
    "numbers": ("country_code", "trunk_prefix", "international_prefixes", "national_length", "area_code"),
    "vip": ("source", "priority", "normal_priority", "groups", "addressbook_domain_id", "addressbook_table_prefix"),
    "sticky": ("ttl", "dial_timeout", "legacy_technology", "unbind_sound", "agents", "min_talk", "busy_wait"),
    "queue": ("ttl", "dial_timeout", "agents", "min_talk", "busy_wait"),
    "fastagi": ("allow",),
    "log": ("syslog_facility", "events", "events_spool", "events_days"),
}


def config_path() -> str:
    return os.environ.get("VIPSTICKY_CONFIG") or DEFAULT_PATH


def load(path=None, strict=True) -> Config:
    """Read the config file (a missing default file means all defaults). An unknown
    section or key is an error when strict (the CLI, the doctor); a call is not
    strict: it gets the rest of the file and the problems as Config.warnings."""
    path = path or config_path()
    try:
        with open(path, encoding="utf-8") as handle:
            sections = read_ini(handle.read(), path)
    except FileNotFoundError:
        if path != DEFAULT_PATH:
            raise ConfigError("config file %s does not exist" % printable(path, 200)) from None
        sections = {}
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError("cannot read config file %s: %s" % (printable(path, 200),
                                                              getattr(error, "strerror", None) or error)) from None
    problems = unknown_names(sections)
    if problems and strict:
        raise ConfigError("config file %s: %s" % (printable(path, 200), problems[0]))
    return from_sections(sections, path)._replace(warnings=tuple(problems))


def unknown_names(sections: dict) -> list:
    """One line per section or key the file holds that vipsticky does not know, with the
    nearest valid name: a misspelt key would otherwise silently keep its default."""
    problems = []
    for section, keys in sections.items():
        kind = "queue" if section.startswith("queue ") else section
        if kind not in KNOWN:
            problems.append("[%s] is not a section of vipsticky.conf%s" % (printable(section), _nearest(
                section, [name for name in KNOWN if name != "queue"] + ["queue NAME"])))
            continue
        problems.extend("[%s] %s is not a setting%s" % (printable(section), printable(key), _nearest(key, KNOWN[kind]))
                        for key in keys if key not in KNOWN[kind])
    return problems


def _nearest(name: str, choices) -> str:
    import difflib  # only a config with a mistake pays for it
    close = difflib.get_close_matches(name.lower(), choices, n=1, cutoff=0.5)
    return ": did you mean %s?" % close[0] if close else " (known: %s)" % ", ".join(choices)


def read_ini(text: str, path: str) -> dict:
    """INI as configparser reads it here: [sections], key = value (or Asterisk's key =>
    value), ; and # comments (also after a value, behind white space), keys
    case-insensitive, no repeats. A few lines instead of configparser, which would cost
    every call more than a millisecond. Asterisk's #include and #exec are refused, not
    taken for comments. Errors name the line, never its text (it may hold a password)."""
    sections, current = {}, None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line[:1] == "#" and _include_or_exec(line):
            raise _ini_error(path, number, "#include and #exec are not supported: "
                                           "vipsticky.conf is one file, put the settings in it")
        if not line or line[0] in ";#":
            continue
        if line[0] == "[":
            if not line.endswith("]") or not line[1:-1].strip():
                raise _ini_error(path, number, "a section header is [name]")
            name = line[1:-1].strip()
            if name in sections:
                raise _ini_error(path, number, "section [%s] appears twice" % printable(name))
            current = sections[name] = {}
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if value.startswith(">"):
            value = value[1:]  # key => value, as Asterisk's own files write it
        if not sep or not key:
            raise _ini_error(path, number, "expected key = value")
        if current is None:
            raise _ini_error(path, number, "%s is outside any [section]" % printable(key))
        if key in current:
            raise _ini_error(path, number, "%s appears twice in its section" % printable(key))
        current[key] = _without_comment(value).strip()
    return sections


def _include_or_exec(line: str) -> bool:
    """Asterisk's #include, #tryinclude or #exec (white space allowed after the #)."""
    word = line[1:].lstrip()
    for directive in ("include", "tryinclude", "exec"):
        following = word[len(directive):len(directive) + 1]  # a whole word: not #included
        if word.startswith(directive) and not (following.isalnum() or following == "_"):
            return True
    return False


def _without_comment(value: str) -> str:
    """The value up to a ; or # that follows white space (a comment behind it)."""
    for position, character in enumerate(value):
        if character in ";#" and position and value[position - 1].isspace():
            return value[:position - 1]
    return value


def _ini_error(path, number, problem) -> ConfigError:
    return ConfigError("config file %s line %d: %s" % (printable(path, 200), number, problem))


# The defaults, written once: the settings' own.
NUMBERS, VIP, STICKY, EVENTS, CONFIG = NumberPlan(), VipSettings(), StickySettings(), EventSettings(), \
    Config(database=None)


def from_sections(sections: dict, path=None) -> Config:
    reader = _Reader(sections)
    database = parse_database_url(
        reader.text("database", "url", DEFAULT_DATABASE_URL),
        connect_timeout=reader.number("database", "connect_timeout", CONNECT_TIMEOUT, float, low=0.1, high=60),
        ssl=reader.text("database", "ssl", "auto"),
        ssl_ca=reader.text("database", "ssl_ca", "") or None,
    )._replace(breaker_seconds=reader.number("database", "breaker_seconds", BREAKER_SECONDS, int, low=0, high=300))
    numbers = NumberPlan(
        country_code=reader.digits("numbers", "country_code", NUMBERS.country_code, min_length=1),
        trunk_prefix=reader.digits("numbers", "trunk_prefix", NUMBERS.trunk_prefix, min_length=0),
        international_prefixes=tuple(
            reader.digits("numbers", "international_prefixes", item, min_length=1, value=item)
            for item in reader.items("numbers", "international_prefixes", ", ".join(NUMBERS.international_prefixes))
        ),
        national_length=reader.number("numbers", "national_length", NUMBERS.national_length, int, low=4, high=14),
        area_code=reader.digits("numbers", "area_code", NUMBERS.area_code, min_length=0),
    )
    if len(numbers.area_code) > numbers.national_length:
        raise ConfigError("[numbers] area_code is longer than national_length")
    source = reader.text("vip", "source", VIP.source)
    if source not in VIP_SOURCES:
        raise ConfigError("[vip] source must be one of %s, not %r" % (", ".join(VIP_SOURCES), source))
    if source != "table" and database.dialect != "mysql":
        raise ConfigError("[vip] source = %s needs PHP Address Book's MySQL/MariaDB: "
                          "the [database] url is SQLite" % source)
    domain = reader.text("vip", "addressbook_domain_id", "")
    prefix = reader.text("vip", "addressbook_table_prefix", "")
    if len(prefix) > TABLE_PREFIX_LENGTH or not WORD_CHARACTERS.issuperset(prefix):
        raise ConfigError("[vip] addressbook_table_prefix may hold only letters, digits and _")
    vip = VipSettings(
        source=source,
        priority=reader.number("vip", "priority", VIP.priority, int, *PRIORITY_LIMITS),
        normal_priority=reader.number("vip", "normal_priority", VIP.normal_priority, int, *PRIORITY_LIMITS),
        groups=tuple(_group(item) for item in reader.items("vip", "groups", "")),
        addressbook_domain_id=reader.number("vip", "addressbook_domain_id", None, int, low=0, high=2**31) if domain else None,
        addressbook_table_prefix=prefix,
    )
    ttl = reader.number("sticky", "ttl", STICKY.ttl, int, *TTL_LIMITS)
    dial_timeout = reader.number("sticky", "dial_timeout", STICKY.dial_timeout, int, *DIAL_TIMEOUT_LIMITS)
    agents = reader.agent_patterns("sticky", ", ".join(STICKY.agents))
    min_talk = reader.number("sticky", "min_talk", STICKY.min_talk, int, *MIN_TALK_LIMITS)
    busy_wait = reader.number("sticky", "busy_wait", STICKY.busy_wait, int, *BUSY_WAIT_LIMITS)
    queues = []
    for section in sections:
        if section.startswith("queue "):
            name = section[len("queue "):].strip()
            if not valid_queue(name):
                raise ConfigError("[%s]: not a usable queue name" % section)
            queues.append((name, QueueSettings(
                ttl=reader.number(section, "ttl", ttl, int, *TTL_LIMITS),
                dial_timeout=reader.number(section, "dial_timeout", dial_timeout, int, *DIAL_TIMEOUT_LIMITS),
                agents=reader.agent_patterns(section, ", ".join(agents)),
                min_talk=reader.number(section, "min_talk", min_talk, int, *MIN_TALK_LIMITS),
                busy_wait=reader.number(section, "busy_wait", busy_wait, int, *BUSY_WAIT_LIMITS),
            )))
    technology = reader.text("sticky", "legacy_technology", STICKY.legacy_technology)
    if not technology or not WORD_CHARACTERS.issuperset(technology):
        raise ConfigError("[sticky] legacy_technology must be a channel technology such as SIP or PJSIP")
    sound = reader.text("sticky", "unbind_sound", STICKY.unbind_sound)
    if not SOUND_NAME_CHARACTERS.issuperset(sound):
        raise ConfigError("[sticky] unbind_sound must be a sound file name such as beep")
    sticky = StickySettings(ttl=ttl, dial_timeout=dial_timeout, legacy_technology=technology,
                            unbind_sound=sound, queues=tuple(queues), agents=agents, min_talk=min_talk,
                            busy_wait=busy_wait)
    facility = reader.text("log", "syslog_facility", CONFIG.syslog_facility)
    if facility not in SYSLOG_FACILITIES:
        raise ConfigError("[log] syslog_facility must be daemon, user or local0..local7")
    fastagi = FastagiSettings(allow=tuple(reader.items("fastagi", "allow", "")))
    switch = reader.text("log", "events", "on" if EVENTS.enabled else "off")
    if switch not in ("on", "off"):
        raise ConfigError("[log] events must be on or off")
    spool = reader.text("log", "events_spool", EVENTS.spool)
    if not spool.startswith("/"):
        raise ConfigError("[log] events_spool must be an absolute file path")
    events = EventSettings(enabled=switch == "on", spool=spool,
                           days=reader.number("log", "events_days", EVENTS.days, int, *EVENTS_DAYS_LIMITS))
    return Config(database=database, numbers=numbers, vip=vip, sticky=sticky,
                  syslog_facility=facility, path=path, fastagi=fastagi, events=events)


def parse_database_url(url: str, connect_timeout: float = CONNECT_TIMEOUT, ssl: str = "auto",
                       ssl_ca=None) -> DatabaseSettings:
    """mysql://user:pass@host:port[,host2[:port]...]/db[?unix_socket=/path] or sqlite:///path."""
    if ssl not in ("auto", "on", "off"):
        raise ConfigError("[database] ssl must be auto, on or off")
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]  # sqlite:////abs/path, as SQLAlchemy spells it
        if not path:
            raise ConfigError("[database] url: sqlite:///PATH needs a file path")
        return DatabaseSettings(dialect="sqlite", url=url, connect_timeout=connect_timeout, path=path)
    if not url.startswith("mysql://"):
        raise ConfigError("[database] url must start with mysql:// or sqlite:///")
    user, password, items, database, query = _mysql_url_parts(url)
    hosts = tuple(_host_port(host, port, several=len(items) > 1) for host, port in items)
    database = _unquote(database)
    if not database or "/" in database:
        raise ConfigError("[database] url must name one database: mysql://user:pass@host:port/DATABASE")
    query = dict(item.partition("=")[::2] for item in query.split("&") if item)
    unix_socket = _unquote(query["unix_socket"]) if query.get("unix_socket") else None
    if unix_socket and len(hosts) > 1:
        raise ConfigError("[database] url: unix_socket is one local server, not several hosts")
    if ssl == "auto":
        # TLS costs ~38 ms per connect and buys nothing on loopback or a unix socket.
        use_ssl = not (unix_socket or all(host in LOOPBACK_HOSTS for host, _ in hosts))
    else:
        use_ssl = ssl == "on"
    return DatabaseSettings(
        dialect="mysql", url=url, connect_timeout=connect_timeout, ssl=use_ssl, ssl_ca=ssl_ca,
        host=hosts[0][0], port=hosts[0][1],
        user=_unquote(user) if user else "asterisk",
        password=_unquote(password) if password is not None else None,
        database=database, unix_socket=unix_socket, hosts=hosts,
    )


def _mysql_url_parts(url: str):
    """(user, password, [(host, port), ...], database, query) of a mysql:// url, each as
    written (user, password and a port None when absent). Split by hand: a regular
    expression would be compiled again in every call's new process."""
    authority, slash, rest = url[len("mysql://"):].partition("/")
    credentials, at, hosts = authority.rpartition("@")
    if not slash or "@" in credentials or any(mark in authority for mark in "?#") or "#" in rest:
        raise ConfigError(INVALID_MYSQL_URL)
    user = password = None
    if at:
        user, colon, password = credentials.partition(":")
        password = password if colon else None
    database, _, query = rest.partition("?")
    return user, password, [_split_host(item) for item in hosts.split(",")], database, query


def _split_host(item: str):
    """(host, port or None) of one host[:port] or [IPv6][:port] of the url."""
    if item.startswith("["):
        close = item.find("]")
        host, after = item[1:close], item[close + 1:]
        if close < 0 or not IPV6_CHARACTERS.issuperset(host) or after[:1] not in ("", ":"):
            raise ConfigError(INVALID_MYSQL_URL)
        return host, after[1:] if after else None
    host, colon, port = item.partition(":")
    if "[" in host or "]" in host:
        raise ConfigError(INVALID_MYSQL_URL)
    return host, port if colon else None


def _host_port(host: str, port, several: bool):
    """(host, port) to connect to: localhost when the host is left out of the only one,
    3306 when the port is."""
    number = int(port) if port and port.isdecimal() else 0
    if port is not None and not 0 < number < 65536:
        raise ConfigError(INVALID_MYSQL_URL)
    host = _unquote(host)
    if not host and several:
        raise ConfigError("[database] url: an empty host in the list of hosts (host1,host2:port,...)")
    return host or "localhost", number or 3306


def _unquote(text: str) -> str:
    """%-decoding (UTF-8) for URL parts: urllib.parse would cost each call 2 ms of imports."""
    if "%" not in text:
        return text
    import re  # only a url with %-escapes pays for compiling the pattern
    return re.sub(r"(?:%[0-9A-Fa-f]{2})+",
                  lambda match: bytes.fromhex(match.group(0).replace("%", "")).decode("utf-8", "replace"), text)


def _group(item: str):
    name, sep, priority = item.rpartition(":")
    name = name.strip()
    digits = priority.strip().removeprefix("-")
    if not sep or not name or not 1 <= len(digits) <= 7 or not digits.isdecimal():
        raise ConfigError("[vip] groups: %r is not GroupName:priority" % item)
    return name, int(priority)


class _Reader:
    def __init__(self, sections):
        self.sections = sections

    def text(self, section, key, default):
        return self.sections.get(section, {}).get(key, default).strip()

    def items(self, section, key, default):
        return [item.strip() for item in self.text(section, key, default).split(",") if item.strip()]

    def number(self, section, key, default, kind, low, high):
        raw = self.text(section, key, "")
        if raw == "":
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError("[%s] %s must be a number, not %r" % (section, key, raw)) from None
        if not low <= value <= high:
            raise ConfigError("[%s] %s must be between %s and %s" % (section, key, low, high))
        return value

    def agent_patterns(self, section, default):
        """The section's agents patterns, checked; default (known good) when it has none."""
        patterns = tuple(self.items(section, "agents", default))
        if "agents" not in self.sections.get(section, {}):
            return patterns
        for pattern in patterns:
            if not valid_agent_pattern(pattern):
                raise ConfigError("[%s] agents: %r is not an interface pattern such as PJSIP/* or "
                                  "Local/*@agents/n" % (section, printable(pattern)))
        return patterns

    def digits(self, section, key, default, min_length, value=None):
        value = self.text(section, key, default) if value is None else value
        if not min_length <= len(value) <= 6 or not DIGITS.issuperset(value):
            raise ConfigError("[%s] %s must be digits, not %r" % (section, key, value))
        return value
