"""Several database hosts in [database] url (issue 13, Deliver 1), without a cluster: the
shared MariaDB behind a closed port and a black hole.

mysql://user:pw@db1,db2:3307,db3/vipsticky: tried in order within connect_timeout (each
attempt gets what is left of it divided by the hosts still to try); a host that refused or
timed out is skipped by calls for breaker_seconds; the CLI tries every host each time; a
single host behaves as before.
"""
import os

import pytest

from agi_scripts.config import ConfigError, parse_database_url
from agi_scripts.database import Database, DatabaseError
from utils import (NUMBER, BlackHole, FastAGIServer, assert_clean, assert_failed_open, free_port, vip_result, vipsticky,
                   write_config)


def test_the_url_takes_several_hosts():
    settings = parse_database_url("mysql://user:pw@db1,db2:3307,db3/vipsticky")
    assert settings.hosts == (("db1", 3306), ("db2", 3307), ("db3", 3306))
    assert (settings.host, settings.port) == ("db1", 3306)  # the first host, as before
    assert settings.servers == settings.hosts
    assert settings.safe_url == "mysql://user:***@db1,db2:3307,db3/vipsticky"
    assert settings.ssl  # not every host is loopback
    assert parse_database_url("mysql://u@[::1]:3307,127.0.0.1/x").hosts == (("::1", 3307), ("127.0.0.1", 3306))
    assert not parse_database_url("mysql://u@[::1]:3307,127.0.0.1/x").ssl
    single = parse_database_url("mysql://root@127.0.0.1:3306/test")
    assert single.hosts == (("127.0.0.1", 3306),) and single.servers == single.hosts
    for url, problem in (("mysql://u@db1,,db3/x", "an empty host"), ("mysql://u@db1,/x", "an empty host"),
                         ("mysql://u@db1,db2:99999/x", "not a valid"), ("mysql://u@db1,db2:x/x", "not a valid"),
                         ("mysql://u@a,b/x?unix_socket=/run/mysqld/mysqld.sock", "unix_socket")):
        with pytest.raises(ConfigError) as raised:
            parse_database_url(url)
        assert problem in str(raised.value), (url, raised.value)


def hosts_before(setup, *ports) -> str:
    """setup's url with 127.0.0.1:PORT hosts put before its own host."""
    settings = parse_database_url(setup.url)
    own = "%s:%d" % (settings.host, settings.port)
    assert "@%s/" % own in setup.url
    return setup.url.replace("@%s/" % own, "@%s,%s/" % (",".join("127.0.0.1:%d" % port for port in ports), own))


def test_a_refused_host_is_skipped_and_then_held_off(mariadb, tmp_path):
    closed = free_port()
    write_config(mariadb.path, hosts_before(mariadb, closed), connect_timeout=1)
    mariadb.env["XDG_RUNTIME_DIR"] = str(tmp_path)
    call = assert_clean(mariadb.run("vip_or_not", [NUMBER]))
    assert call.warnings == [] and vip_result(call) == ("5", "0", "")
    assert (tmp_path / ("down-127.0.0.1-%d" % closed)).exists()  # its breaker tripped
    stored = assert_clean(mariadb.run("sticky_route", ["remember", NUMBER, "", "PJSIP/alena"]))
    assert stored.variables == {"STICKY_STATUS": "stored"}
    # The CLI tries every host each time, breaker or not.
    listed = vipsticky(mariadb, "bindings", "list")
    assert listed.returncode == 0 and "PJSIP/alena" in listed.stdout, listed.stderr


def test_a_black_hole_gets_its_share_of_connect_timeout_then_is_skipped(mariadb, tmp_path):
    with BlackHole() as hole:
        write_config(mariadb.path, hosts_before(mariadb, hole.port), connect_timeout=2)
        mariadb.env["XDG_RUNTIME_DIR"] = str(tmp_path)
        first = assert_clean(mariadb.run("vip_or_not", [NUMBER]))
        second = assert_clean(mariadb.run("vip_or_not", [NUMBER]))
    print("\nblack hole first of two hosts, connect_timeout 2: first call %.2f s, next %.2f s"
          % (first.elapsed, second.elapsed))
    assert first.warnings == [] and second.warnings == []
    assert 1.0 <= first.elapsed < 2.0  # half the budget for the black hole, then the server
    assert second.elapsed < 0.5  # the black hole is held off


def test_every_host_down_fails_open_within_the_budget(tmp_path):
    closed = [free_port(), free_port()]
    with BlackHole() as hole:
        path = tmp_path / "vipsticky.conf"
        write_config(path, "mysql://u:pw@127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/db" % (closed[0], hole.port, closed[1]),
                     connect_timeout=1)
        env = dict(os.environ, VIPSTICKY_CONFIG=str(path), XDG_RUNTIME_DIR=str(tmp_path))
        from agi_scripts.asterisk_standin import Peer
        first = assert_failed_open(Peer().run_script("vip_or_not", [NUMBER], process_env=env), "vip_or_not", limit=2)
        again = assert_failed_open(Peer().run_script("vip_or_not", [NUMBER], process_env=env), "vip_or_not", limit=2)
    reason = first.warnings[0]
    for port in (closed[0], hole.port, closed[1]):
        assert "127.0.0.1:%d: " % port in reason, reason
    assert "pw" not in reason.replace("pw@", "")
    assert "every server" in again.warnings[0] and "not tried again" in again.warnings[0], again.warnings
    assert again.elapsed < 0.5, again.elapsed


def test_a_single_host_fails_as_before(tmp_path):
    port = free_port()
    settings = parse_database_url("mysql://u:pw@127.0.0.1:%d/db" % port, connect_timeout=1)
    database = Database(settings, breaker=False)
    with pytest.raises(DatabaseError) as raised:
        database.connect()
    assert str(raised.value).startswith("cannot connect to mysql://u:***@127.0.0.1:%d/db: Can't connect" % port)


def test_fastagi_pool_fails_over(mariadb, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    write_config(mariadb.path, hosts_before(mariadb, free_port()), connect_timeout=1)
    with FastAGIServer(mariadb.config, pool_size=2) as server:
        calls = [server.call("vip_or_not", [NUMBER]) for _ in range(5)]
    for call in calls:
        assert_clean(call)
        assert call.warnings == [] and vip_result(call) == ("5", "0", "")
    assert max(call.elapsed for call in calls[1:]) < 0.2
