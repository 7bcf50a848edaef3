"""Shared fixtures: a real MariaDB (one fresh database per test) and SQLite files.

MariaDB comes from VIPSTICKY_TEST_MYSQL (default mysql://root@127.0.0.1:3306/test);
a test that needs it FAILS when the server cannot be reached: .ci/run starts it.
The helpers behind the fixtures are in utils.py (tests import them from there).
"""
import pytest

import private_mariadb
from utils import DIALECTS, build_setup


@pytest.fixture(params=DIALECTS)
def setup(request, tmp_path):
    """An installed schema on SQLite and on MariaDB (the test runs once for each)."""
    return build_setup(request.param, request, tmp_path)


@pytest.fixture
def mariadb(request, tmp_path):
    """An installed schema on MariaDB only."""
    return build_setup("mariadb", request, tmp_path)


@pytest.fixture
def sqlite(request, tmp_path):
    return build_setup("sqlite", request, tmp_path)


@pytest.fixture
def make_setup(request, tmp_path_factory):
    """make_setup(dialect, extra_ini='', install=True) for tests that need their own config."""
    def make(dialect, extra="", install=True):
        return build_setup(dialect, request, tmp_path_factory.mktemp(dialect), extra=extra, install=install)
    return make


@pytest.fixture(scope="module")
def private_server(tmp_path_factory):
    """A private MariaDB of this module's own (tests/private_mariadb.py), for tests that
    stop, kill or restart the server or need their own users."""
    if not private_mariadb.available():
        pytest.fail("mariadb-install-db and mariadbd are needed (apt-get install mariadb-server)")
    server = private_mariadb.PrivateMariaDB(tmp_path_factory.mktemp("private-mariadb"))
    server.install_seconds = server.install()
    server.start()
    yield server
    server.destroy()
