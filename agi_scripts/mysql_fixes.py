"""What to do about each MySQL error an install can meet: one sentence each, said by the CLI and quoted by the README.

Checked on MariaDB 10.11 with accounts lacking each privilege (and a server with binary
logging on). Per-call scripts never import this module.
"""
import re

SECTION = 'README, "The database"'
FIXES = {
    1044: "Grant the account its rights on that database as the MySQL root user: the GRANT lines of %s."
          % SECTION,
    1045: "Check the user and password in the [database] url (a special character of the password is "
          "percent-encoded, @ as %%40) and that CREATE USER named the host vipsticky connects from "
          "('vipsticky'@'localhost' for a unix_socket url, 'vipsticky'@'127.0.0.1' for TCP to this host): %s."
          % SECTION,
    1049: "Create the database as the MySQL root user, CREATE DATABASE vipsticky CHARACTER SET utf8mb4 "
          "with the name of the [database] url, then the account and its grants: %s." % SECTION,
    1142: "Grant the missing table privilege: calls need SELECT, INSERT, UPDATE, DELETE on vipsticky's tables, "
          "install-schema also CREATE (ALTER and DROP to upgrade the original numbers_remember): %s."
          % SECTION,
    1370: "Grant CREATE ROUTINE, ALTER ROUTINE, EXECUTE on the address book's database to the account that "
          "runs install-schema --addressbook (it becomes the triggers' definer): %s." % SECTION,
    1419: "Binary logging is on: as the MySQL root user run SET GLOBAL log_bin_trust_function_creators = 1 "
          "(and put log_bin_trust_function_creators = 1 under [mysqld] in the server's config), or run "
          "install-schema --addressbook as an account with SUPER.",
    1227: "This needs SUPER: with binary logging on, have the MySQL root user run SET GLOBAL "
          "log_bin_trust_function_creators = 1 (and put it under [mysqld] in the server's config) instead, "
          "then rerun install-schema --addressbook.",
    2002: "Start the MySQL server, or correct unix_socket in the [database] url (SELECT @@socket shows the "
          "server's).",
    2003: "Start the MySQL server (systemctl start mariadb) or correct host:port in the [database] url; a "
          "server with bind-address = 127.0.0.1 answers connections from this host only.",
}
CODE = re.compile(r"\(MySQL error (\d+)\)")  # how database.reason() names the error


def fix_for(message: str):
    """The sentence for the first MySQL error named in message, or None."""
    for match in CODE.finditer(message):
        sentence = FIXES.get(int(match.group(1)))
        if sentence:
            return sentence
    return None


def with_fix(message: str) -> str:
    """message, followed by what to do when it names a known MySQL error."""
    sentence = fix_for(message)
    return "%s. %s" % (message.rstrip("."), sentence) if sentence else message
