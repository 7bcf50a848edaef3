"""`vipsticky doctor`: check what a call needs on this host and say what to fix."""
from __future__ import annotations

import os

from .addressbook import installed_number_plan, plan_signature, trigger_names
from .config import DEFAULT_PATH, ConfigError, load
from .database import Database, DatabaseError
from .install import InstallError, can_access, installed_script, user_ids
from .schema import SCHEMA_VERSION
from .scripts import NAMES


class Doctor:
    """Checks what a call needs on this host; every finding says what to fix."""

    def __init__(self, config_path: str, user: str, agi_dir: str):
        self.config_path, self.user, self.agi_dir = config_path, user, agi_dir
        self.findings: list[tuple[bool, str]] = []

    def ok(self, text):
        self.findings.append((True, text))

    def fix(self, text):
        self.findings.append((False, text))

    def run(self) -> bool:
        if user_ids(self.user) is None:
            self.fix("no system user %s: pass --user with the user Asterisk runs as" % self.user)
            return False
        config = None
        if self._check_config_file():
            try:
                config = load(self.config_path)
                self.ok("config %s parses" % self.config_path)
            except ConfigError as error:
                self.fix("config: %s" % error)
        if config is not None:
            self._check_database(config)
        self._check_agi_links()
        return all(good for good, _ in self.findings)

    def _check_config_file(self) -> bool:
        path = self.config_path
        if not os.path.exists(path):
            if path == DEFAULT_PATH:
                self.ok("no %s: every setting is its default (SQLite under /var/lib/asterisk)" % path)
                return True
            self.fix("config %s does not exist" % path)
            return False
        if not can_access(path, self.user, os.R_OK):
            self.fix("config %s is not readable by %s: chown root:%s %s; chmod 640 %s"
                     % (path, self.user, self.user, path, path))
        if os.stat(path).st_mode & 0o007:
            self.fix("config %s is readable by every user (it may hold a password): chmod o-rwx %s" % (path, path))
        if can_access(path, self.user, os.R_OK) and not os.stat(path).st_mode & 0o007:
            self.ok("config %s readable by %s and not by others" % (path, self.user))
        for target in (path, os.path.dirname(os.path.abspath(path))):
            writers = writers_besides_root(target)
            if writers:
                # The config steers root's next install-schema (database url, table prefix).
                self.fix("%s is writable by %s, not only by root: chown root:root %s; chmod go-w %s"
                         % (target, writers, target, target))
        return True

    def _check_database(self, config):
        settings = config.database
        if settings.dialect == "sqlite":
            if not self._check_sqlite_files(settings.path):
                return
        database = Database(settings)
        try:
            version = database.schema_version()
            if version != SCHEMA_VERSION:
                self.fix("database %s has schema version %s, this vipsticky needs %d: run vipsticky install-schema"
                         % (settings.safe_url, version, SCHEMA_VERSION))
            else:
                self.ok("database %s reachable, schema version %d" % (settings.safe_url, version))
            if config.vip.source != "table":
                missing = set(trigger_names(config.vip).values()) - set(database.triggers())
                if missing:
                    self.fix("address-book triggers missing (%s): run vipsticky install-schema --addressbook"
                             % ", ".join(sorted(missing)))
                elif installed_number_plan(database) != plan_signature(config.numbers):
                    self.fix("the address-book index was built for another [numbers] plan: "
                             "run vipsticky install-schema --addressbook")
                else:
                    self.ok("address-book triggers present, index built for this [numbers] plan")
        except DatabaseError as error:
            self.fix("database: %s" % error)
        finally:
            database.close()

    def _check_sqlite_files(self, path) -> bool:
        folder = os.path.dirname(path) or "."
        if not os.path.exists(path):
            self.fix("SQLite file %s does not exist: run vipsticky install-schema (as root is fine)" % path)
            return False
        good = True
        for target in [path] + [path + s for s in ("-wal", "-shm") if os.path.exists(path + s)]:
            if not can_access(target, self.user, os.R_OK | os.W_OK):
                self.fix("%s is not writable by %s, so every binding would fail open: chown %s %s"
                         % (target, self.user, self.user, target))
                good = False
        if not can_access(folder, self.user, os.W_OK | os.X_OK):
            self.fix("folder %s is not writable by %s (SQLite creates its -wal and -shm files there): "
                     "chown %s %s" % (folder, self.user, self.user, folder))
            good = False
        if good:
            self.ok("SQLite file %s and its folder writable by %s" % (path, self.user))
        return True

    def _check_agi_links(self):
        for name in NAMES:
            link = os.path.join(self.agi_dir, name)
            try:
                target = installed_script(name)
            except InstallError as error:
                self.fix(str(error))
                return
            if not os.path.exists(link):
                self.fix("%s missing: run vipsticky install-agi --agi-dir %s" % (link, self.agi_dir))
            elif os.path.realpath(link) != os.path.realpath(target):
                self.fix("%s is not this vipsticky's %s: run vipsticky install-agi --agi-dir %s"
                         % (link, target, self.agi_dir))
            elif not can_access(target, self.user, os.X_OK):
                self.fix("%s is not executable by %s" % (target, self.user))
            else:
                self.ok("%s -> %s" % (link, target))


def writers_besides_root(path: str) -> str | None:
    """Who other than root may change path (a file, or the entries of a folder), or None."""
    info = os.stat(path)
    if info.st_uid != 0 and info.st_mode & 0o200:
        return "its owner (uid %d)" % info.st_uid
    if info.st_gid != 0 and info.st_mode & 0o020:
        return "its group (gid %d)" % info.st_gid
    sticky_folder = os.path.isdir(path) and info.st_mode & 0o1000  # like /tmp: others cannot replace our file
    if info.st_mode & 0o002 and not sticky_folder:
        return "every user"
    return None
