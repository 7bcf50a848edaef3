"""Fixtures of the real-Asterisk tests.

The matrix: every Asterisk build (the tarballs in ../shared/asterisk, or $VIPSTICKY_ASTERISK)
runs both dialplan flavours, and each build runs each database once: 22 conf+sqlite and
ael+mariadb, 20 conf+mariadb and ael+sqlite. Every test gets a fresh Asterisk and a fresh
database. Without any Asterisk the tests skip with one reason; when one is there but cannot
be used they fail under CI (or when $VIPSTICKY_ASTERISK asked for it), else they skip.
"""
import os
import subprocess
from pathlib import Path

import pytest

from .real_asterisk import (OWN_BUILD, QUEUE, SCRIPTS_BIN, VIPSTICKY_INI, Asterisk, Unavailable, interface, poll,
                            prepare, private_folder, sources)

SOURCES, NO_ASTERISK = sources()
STRICT = bool(os.environ.get("CI") or os.environ.get(OWN_BUILD))
DIALECTS = ("sqlite", "mariadb")


def pytest_configure(config):
    config.addinivalue_line("markers", "asterisk: runs a real Asterisk (tests/e2e); -m 'not asterisk' leaves them out")


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.asterisk)


def unavailable(reason: str):
    if STRICT:
        pytest.fail(reason)
    pytest.skip(reason)


def matrix():
    combos = [pytest.param((source, flavour, DIALECTS[(index + offset) % 2]),
                           id="%s-%s-%s" % (source.label, flavour, DIALECTS[(index + offset) % 2]))
              for index, source in enumerate(SOURCES) for offset, flavour in enumerate(("conf", "ael"))]
    return combos or [pytest.param(None, id="no-asterisk")]


@pytest.fixture(scope="session")
def asterisk_build(tmp_path_factory):
    """asterisk_build(source) -> Build: each tarball unpacked once per session."""
    prepared = {}

    def get(source):
        if source.label not in prepared:
            try:
                prepared[source.label] = prepare(source, tmp_path_factory.mktemp("asterisk-%s" % source.label))
            except Unavailable as error:
                prepared[source.label] = error
        if isinstance(prepared[source.label], Unavailable):
            unavailable(str(prepared[source.label]))
        return prepared[source.label]
    return get


@pytest.fixture(params=matrix())
def combo(request):
    """(source, flavour, dialect) of this run."""
    if request.param is None:
        pytest.skip(NO_ASTERISK)
    return request.param


class Scene:
    """One test's world: a running Asterisk with the shipped dialplan, and its database."""

    def __init__(self, pbx: Asterisk, setup):
        self.pbx, self.setup = pbx, setup

    def vipsticky(self, *args) -> str:
        """Run the installed vipsticky command against the test's database."""
        done = subprocess.run([str(SCRIPTS_BIN / "vipsticky")] + list(args), capture_output=True, text=True,
                              env=self.setup.env, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def bind(self, number: str, agent: str) -> None:
        self.vipsticky("bindings", "set", number, interface(agent), "--queue", QUEUE)

    def bindings(self):
        """(key, queue, agent, last_contact, expires_at) of every row, read straight from the table."""
        rows, _ = self.setup.query("SELECT number, queue, agent, last_contact, expires_at FROM numbers_remember")
        return sorted(tuple(row) for row in rows)

    def agents_bound(self):
        return [(key, queue, agent) for key, queue, agent, _, _ in self.bindings()]

    def wait_bindings(self, expected, timeout: float = 10):
        """Wait until the (key, queue, agent) rows are `expected`; returns the last rows seen."""
        poll(lambda: self.agents_bound() == expected, timeout)
        return self.agents_bound()


@pytest.fixture(scope="session")
def stopping():
    """Instances told to stop: they exit while the next tests run, and are reaped here."""
    instances = []
    yield instances
    for pbx in instances:
        pbx.wait_stopped()


@pytest.fixture
def start_scene(combo, asterisk_build, make_setup, stopping, tmp_path):
    """start_scene(extra_ini="", config_text=None) -> Scene. config_text replaces the whole
    vipsticky config (e.g. a dead database); the combo's database is made all the same."""
    source, flavour, dialect = combo
    started = []

    def start(extra_ini="", config_text=None):
        build = asterisk_build(source)
        setup = make_setup(dialect, VIPSTICKY_INI + extra_ini)
        if config_text is not None:
            Path(setup.path).write_text(config_text)
        pbx = Asterisk(build, private_folder(tmp_path / ("pbx%d" % len(started))), flavour, setup.env)
        started.append(pbx)
        try:
            pbx.start()
        except Unavailable as error:
            unavailable(str(error))
        return Scene(pbx, setup)

    yield start
    for pbx in started:
        problems = pbx.problems() if pbx.ami is not None else []
        pbx.stop(wait=False)
        stopping[:] = [other for other in stopping if not other.stopped()] + [pbx]
        assert not problems, "the Asterisk log of %s shows:\n%s" % (pbx.folder, "\n".join(problems))


@pytest.fixture
def scene(start_scene):
    return start_scene()
