"""./dev on a MariaDB that lets root in only through its socket (issue 9): the test user it makes
has a random password and is dropped when the run ends (0.1 left a GRANT ALL ON *.* user with
the password vipsticky_test behind).

The real `dev` functions run against the real MariaDB: a copy of the script whose last lines
(the `case` of its commands) are replaced by a call of ensure_mariadb, given a test url that
cannot log in, so that it takes the fresh-Debian branch.
"""
import os
import re
import subprocess
import sys

import pytest

from utils import server_connection

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="./dev makes the user through the root socket")


def users_named(name="vipsticky_test"):
    connection = server_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT host FROM mysql.user WHERE user = %s", (name,))
            return sorted(row[0] for row in cursor.fetchall())
    finally:
        connection.close()


@needs_root
def test_dev_makes_a_test_user_with_a_random_password_and_drops_it(tmp_path):
    if not os.access("/usr/bin/mariadb", os.X_OK):
        pytest.fail("/usr/bin/mariadb is needed (apt-get install mariadb-client)")
    assert users_named() == []
    with open(os.path.join(REPO, "dev")) as handle:
        script = handle.read()
    functions = script[:script.index('case "${1:-}" in')]
    # While the run lasts: print the url and who exists; then the script ends (its EXIT trap runs).
    driver = ('ensure_mariadb\necho "url=$VIPSTICKY_TEST_MYSQL"\n'
              '/usr/bin/mariadb -N -e "SELECT host FROM mysql.user WHERE user = \'vipsticky_test\' ORDER BY host"\n')
    (tmp_path / "dev").write_text(functions + driver)
    os.symlink(os.path.dirname(os.path.dirname(sys.executable)), str(tmp_path / ".venv"))
    env = dict(os.environ, VIPSTICKY_TEST_MYSQL="mysql://nobody_at_all@127.0.0.1:3306/test")
    done = subprocess.run(["sh", str(tmp_path / "dev")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    url = re.search(r"^url=(\S+)$", done.stdout, re.M).group(1)
    password = re.match(r"mysql://vipsticky_test:([0-9a-f]+)@127\.0\.0\.1:3306/test$", url).group(1)
    assert len(password) == 24 and password != "vipsticky_test"
    assert done.stdout.split()[-2:] == ["127.0.0.1", "localhost"]  # it existed while the run lasted
    assert "dropped MariaDB user vipsticky_test" in done.stderr
    assert users_named() == []  # and is gone now
