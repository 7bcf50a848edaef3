"""The per-call path imports only what the call needs: never click, PyMySQL only for a
mysql:// url, not the idna codec, no typing/dataclasses machinery of ours. Checked in the real script
process with Python's own import log (PYTHONPROFILEIMPORTTIME)."""
import re

import pytest

from agi_scripts.asterisk_standin import Asterisk
from utils import assert_clean, server_connection, server_params

SCRIPTS = [("vip_or_not", ["89130751580"]), ("sticky_route", ["lookup", "89130751580", "support"]),
           ("delnum", ["89130751580"])]


def imported_modules(call):
    return {match.group(1) for match in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", call.stderr, re.M)}


@pytest.mark.parametrize("script,args", SCRIPTS)
def test_a_call_on_sqlite_imports_neither_click_nor_pymysql(sqlite, script, args):
    sqlite.env["PYTHONPROFILEIMPORTTIME"] = "1"
    call = sqlite.run(script, args, asterisk=Asterisk(devices={"PJSIP/alena": "NOT_INUSE"}))
    modules = imported_modules(call)
    assert "asterisk.agi" in modules and "sqlite3" in modules  # the log really is this process's
    assert not {"click", "pymysql", "agi_scripts.cli", "agi_scripts.fastagi",
                "agi_scripts.asterisk_standin"} & modules
    assert call.exit_code == 0 and call.malformed == []


@pytest.mark.parametrize("script,args", SCRIPTS)
def test_a_call_on_mariadb_imports_pymysql_but_not_click(mariadb, script, args):
    mariadb.env["PYTHONPROFILEIMPORTTIME"] = "1"
    call = mariadb.run(script, args, asterisk=Asterisk(devices={"PJSIP/alena": "NOT_INUSE"}))
    modules = imported_modules(call)
    assert "pymysql" in modules
    assert not {"click", "sqlite3", "agi_scripts.cli"} & modules
    assert "encodings.idna" not in modules  # the host goes to getaddrinfo as bytes: no idna codec
    assert call.exit_code == 0 and call.malformed == []


def test_mariadb_over_a_unix_socket_without_tls(mariadb):
    """[database] url = mysql://...?unix_socket=PATH works, and TLS is off there by default
    (it costs ~38 ms per connect and protects nothing on a local socket)."""
    connection = server_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@socket")
        socket_path = cursor.fetchone()[0]
    connection.close()
    user = server_params()["user"]
    password = server_params()["password"]
    credentials = user + (":" + password if password else "")
    mariadb.url = "mysql://%s@localhost/%s?unix_socket=%s" % (credentials, mariadb.mysql_database, socket_path)
    mariadb.rewrite()
    settings = mariadb.config.database
    assert settings.unix_socket == socket_path and settings.ssl is False
    database = mariadb.database()
    database.vip_add("79130751580", 10, "Over the socket")
    assert database.connect().host_info == "Localhost via UNIX socket"
    database.close()
    call = mariadb.run("vip_or_not", ["89130751580"])
    assert call.variables == {"QUEUE_PRIO": "10", "VIP": "1", "VIP_LABEL": "Over the socket"}
    assert_clean(call)
