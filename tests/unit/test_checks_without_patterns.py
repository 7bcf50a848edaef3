"""The checks a call runs test characters against sets instead of compiling regular
expressions in every call's new process. Here each one is held against the regular
expression it replaced, on generated input rich in the characters that matter: they
accept and refuse the same strings, and the config reader gives the same result and
the same error. (The patterns are applied as whole-string matches: the old `$` also
accepted one trailing line feed, which no value can carry here; the checks refuse it.)
"""
import re

import pytest
from hypothesis import example, given, settings, strategies as st

from agi_scripts import delnum, sticky_route, vip_or_not
from agi_scripts.agi import is_reply
from agi_scripts.config import ConfigError, NumberPlan, from_sections, load, parse_database_url, read_ini
from agi_scripts.number_keys import number_key
from agi_scripts.rules import valid_agent, valid_agent_pattern, valid_queue, valid_technology
from harness import Unit, idle

AGENT = r"(?=.{3,120}$)[A-Za-z][A-Za-z0-9_]{0,31}/[A-Za-z0-9_.@:+=#*/~%-]+"
AGENT_PATTERN = r"[A-Za-z][A-Za-z0-9_]{0,31}/[A-Za-z0-9_.@:+=#~%/-]*\*?[A-Za-z0-9_.@:+=#~%/-]*"
QUEUE_NAME = r"[^\s\x00-\x1f\x7f\"',|\\()\[\]${}]{1,80}"
TECHNOLOGY = r"[A-Za-z][A-Za-z0-9_]{0,31}"
REPLY = r"200 result=|5[12][0-9][ -]|HANGUP"
NUMBER = r"\+?[0-9 ().\-]*"
_HOST_PORT = r"(?:\[[0-9A-Fa-f:.]*\]|[^:/?#@\[\],]*)(?::[^/?#@,]*)?"
MYSQL_URL = (r"mysql://(?:(?P<user>[^:@/?#]*)(?::(?P<password>[^@/?#]*))?@)?(?P<hosts>%s(?:,%s)*)"
             r"/(?P<database>[^?#]*)(?:\?(?P<query>[^#]*))?" % (_HOST_PORT, _HOST_PORT))
HOST_PORT = r"(?P<host>\[[0-9A-Fa-f:.]*\]|[^:\[\]]*)(?::(?P<port>.*))?"

# What these strings are made of: the separators and quotes each check is about, some
# letters and digits, white space of several kinds, non-ASCII letters and digits.
TRICKY = "aZ09_/.@:+=#*~%-,;|&'\"\\()[]${}?! \t\x00\x1f\x7f\xa0\u200e\u2028é٣²Я"
tricky = st.text(alphabet=TRICKY, max_size=24)


def test_a_call_compiles_no_regular_expression(tmp_path, monkeypatch):
    """Reading a config that sets what a site sets, and each script's call from start to
    end (the outcome appended to the spool included), use no regular expression: each
    would be compiled again in every call's new process."""
    unit = Unit(tmp_path, extra="[numbers]\ncountry_code = 7 ; Russia\ninternational_prefixes = 810, 00\n"
                                "[vip]\ngroups = Gold:20\n[sticky]\nagents = PJSIP/*, Local/*@agents/n\n"
                                "unbind_sound = beep\nlegacy_technology = SIP\n[queue q1]\nttl = 600\n"
                                "[log]\nsyslog_facility = local0\n")
    compiled = []
    compile_pattern = re._compile  # what every re function compiles (or finds cached) with
    monkeypatch.setattr(re, "_compile", lambda *pattern: compiled.append(pattern[0]) or compile_pattern(*pattern))
    assert load(unit.path).sticky.queues[0][0] == "q1"
    assert parse_database_url("mysql://asterisk:secret@db1,db2:3307,[::1]/vipsticky").port == 3306
    outcomes = [unit.answer(script, args, asterisk=idle("PJSIP/alena", queue="q1"))[0] for script, args in (
        (vip_or_not.SCRIPT, ["8 (913) 075-15-80"]), (sticky_route.SCRIPT, ["remember", "89130751580", "q1", "PJSIP/alena"]),
        (sticky_route.SCRIPT, ["lookup", "89130751580", "q1"]), (delnum.SCRIPT, ["89130751580", "q1"]))]
    assert outcomes == ["ok"] * 4 and is_reply("200 result=1\n")
    unit.close()
    assert compiled == []


def fullmatch(pattern, text):
    return re.fullmatch(pattern, text) is not None


@settings(max_examples=150, deadline=None)
@given(st.one_of(tricky, st.from_regex(AGENT, fullmatch=True), st.from_regex(AGENT_PATTERN, fullmatch=True)))
@example("PJSIP/alena")
@example("Local/*@agents/n")
@example("P" * 33 + "/x")
@example("a/" + "b" * 118)
def test_agent_checks_agree_with_their_patterns(text):
    assert valid_agent(text) == fullmatch(AGENT, text)
    assert valid_agent_pattern(text) == fullmatch(AGENT_PATTERN, text)
    technology = text.partition("/")[0]
    assert valid_technology(technology) == fullmatch(TECHNOLOGY, technology)


@settings(max_examples=250, deadline=None)
@given(st.one_of(tricky, st.text(max_size=90)))
@example("support")
@example("q" * 80)
@example("q" * 81)
@example("очередь")
@example("sup\u00a0port")
def test_queue_check_agrees_with_its_pattern(text):
    assert valid_queue(text) == (fullmatch(QUEUE_NAME, text) and text.isprintable())


@settings(max_examples=250, deadline=None)
@given(st.one_of(tricky, st.from_regex(r"(200 result=|5[0-9][0-9]|HANGUP)[ -]?.{0,5}", fullmatch=True)))
@example("200 result=1\n")
@example("520-Invalid command syntax.\n")
@example("511 Command Not Permitted\n")
def test_reply_check_agrees_with_its_pattern(line):
    assert is_reply(line) == (re.match(REPLY, line) is not None)


@settings(max_examples=250, deadline=None)
@given(st.one_of(tricky, st.from_regex(r"\+?[0-9 ().-]{0,20}", fullmatch=True)))
def test_a_number_outside_the_pattern_has_no_key(text):
    stripped = text.strip(" \t\r\n\f\v")
    if not fullmatch(NUMBER, stripped):
        assert number_key(text, NumberPlan()) is None
        return
    digits = "".join(ch for ch in stripped if ch.isdigit())
    if len(digits) == 10 and digits.startswith("9") and not stripped.startswith("+"):  # a national number
        assert number_key(text, NumberPlan()) == "7" + digits


def url_by_pattern(url):
    """parse_database_url as it was with the patterns (every check in its order): the
    settings, or the error's message."""
    from agi_scripts.config import LOOPBACK_HOSTS, DatabaseSettings, _unquote
    invalid = "[database] url is not a valid mysql://user:pass@host:port/database URL"
    parts = re.fullmatch(MYSQL_URL, url)
    if not parts:
        return invalid
    items = parts.group("hosts").split(",")
    hosts = []
    for item in items:
        found = re.fullmatch(HOST_PORT, item)
        port = int(found.group("port")) if found and (found.group("port") or "").isdecimal() else 0
        if not found or (found.group("port") is not None and not 0 < port < 65536):
            return invalid
        host = _unquote(found.group("host").strip("[]"))
        if not host and len(items) > 1:
            return "[database] url: an empty host in the list of hosts (host1,host2:port,...)"
        hosts.append((host or "localhost", port or 3306))
    database = _unquote(parts.group("database"))
    if not database or "/" in database:
        return "[database] url must name one database: mysql://user:pass@host:port/DATABASE"
    query = dict(item.partition("=")[::2] for item in (parts.group("query") or "").split("&") if item)
    unix_socket = _unquote(query["unix_socket"]) if query.get("unix_socket") else None
    if unix_socket and len(hosts) > 1:
        return "[database] url: unix_socket is one local server, not several hosts"
    return DatabaseSettings(
        dialect="mysql", url=url, ssl=not (unix_socket or all(host in LOOPBACK_HOSTS for host, _ in hosts)),
        host=hosts[0][0], port=hosts[0][1],
        user=_unquote(parts.group("user")) if parts.group("user") else "asterisk",
        password=_unquote(parts.group("password")) if parts.group("password") is not None else None,
        database=database, unix_socket=unix_socket, hosts=tuple(hosts))


def url_by_hand(url):
    try:
        return parse_database_url(url)
    except ConfigError as error:
        return str(error)


URL_PARTS = st.text(alphabet="ab1:@/?#,[]._-%", max_size=12)


@settings(max_examples=600, deadline=None)
@given(st.builds("mysql://{}{}/{}".format, URL_PARTS, URL_PARTS, URL_PARTS))
@example("mysql://user:pw@db1,db2:3307,[::1]/vipsticky?unix_socket=x")
@example("mysql://u:p%40ss@db1,db2:3307,[::1]:3308/vipsticky?x=1")
@example("mysql://[::1]x/db")
@example("mysql://,h:99999/db")
@example("mysql://u@/db")
@example("mysql://a@b@c/db")
@example("mysql://h:²/db")
def test_url_reader_agrees_with_its_pattern(url):
    assert url_by_hand(url) == url_by_pattern(url)


def ini_by_pattern(text):
    """The INI reader's sections, by the patterns it used (#include/#exec, comments)."""
    sections, current = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if re.match(r"#\s*(try)?include\b|#\s*exec\b", line):
            return "include"
        if not line or line[0] in ";#":
            continue
        if line[0] == "[":
            current = sections.setdefault(line[1:-1].strip(), {})
            continue
        key, _, value = line.partition("=")
        current[key.strip().lower()] = re.split(r"\s[;#]", value.removeprefix(">"), maxsplit=1)[0].strip()
    return sections


@settings(max_examples=250, deadline=None)
@given(st.lists(st.text(alphabet="#; \t\u3000\xa0=>akxe_9", max_size=14), max_size=4))
@example(["#include x"])
@example(["# tryinclude"])
@example(["#included"])
@example(["#exec_x"])
@example(["#\texec"])
def test_ini_reader_agrees_with_its_patterns(values):
    lines = ["[s]"] + ["k%d = %s" % (number, value) if not value.startswith("#") else value
                       for number, value in enumerate(values)]
    text = "\n".join(lines)
    expected = ini_by_pattern(text)
    try:
        got = read_ini(text, "/x.conf")
    except ConfigError as error:  # the keys are unique and each line has its =: only #include/#exec fail
        assert expected == "include", (text, str(error))
        return
    assert got == expected


SETTINGS = {  # (section, key): the pattern a value had to match
    ("numbers", "country_code"): r"[0-9]{1,6}",
    ("numbers", "trunk_prefix"): r"[0-9]{0,6}",
    ("vip", "addressbook_table_prefix"): r"[A-Za-z0-9_]{0,32}",
    ("sticky", "legacy_technology"): r"[A-Za-z0-9_]+",
    ("sticky", "unbind_sound"): r"[A-Za-z0-9_/.-]*",
    ("log", "syslog_facility"): r"daemon|user|local[0-7]",
    ("vip", "groups"): r"(?s).*\S.*:\s*-?\d{1,7}\s*|",  # name:priority, or none
}


@pytest.mark.parametrize("section,key", list(SETTINGS))
@settings(max_examples=60, deadline=None)
@given(value=st.one_of(tricky, st.from_regex(r"[a-z0-9_/.-]{0,8}", fullmatch=True),
                       st.from_regex(r"local[0-9]|-?[0-9]{1,8}|Gold:-?[0-9٣²]{1,8}", fullmatch=True)))
def test_config_checks_agree_with_their_patterns(section, key, value):
    value = value.strip()
    if ";" in value or "#" in value:
        return  # a comment behind the value
    sections = {section: {key: value}}
    if section == "vip":
        sections["database"] = {"url": "mysql://u@h/db"}
        if key == "groups":
            sections[section]["source"] = "addressbook"
            if "," in value:
                return
    try:
        from_sections(sections)
        accepted = True
    except ConfigError:
        accepted = False
    assert accepted == fullmatch(SETTINGS[(section, key)], value), value
