"""Fixtures of the unit layer: a temporary SQLite database per test, and one that is broken."""
import pytest

from agi_scripts.config import parse_database_url
from agi_scripts.database import Database
from harness import Unit


@pytest.fixture
def unit(tmp_path):
    """A Unit with the default config."""
    made = Unit(tmp_path)
    yield made
    made.close()


@pytest.fixture
def broken_database(tmp_path):
    """A Database whose SQLite file's folder does not exist: every statement raises DatabaseError
    (a call never creates a database)."""
    database = Database(parse_database_url("sqlite:///%s" % (tmp_path / "missing" / "vipsticky.sqlite3")))
    yield database
    database.close()
