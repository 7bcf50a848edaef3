"""Installation work the CLI does on the Asterisk host (no SQL here: that is db.py)."""
import grp
import os
import pwd
import sys
from typing import List, Tuple

AGI_SCRIPTS = ("vip_or_not", "sticky_route", "delnum")


class InstallError(Exception):
    """Something on the host stops an install step; the message says what to fix."""


def installed_script(name: str) -> str:
    """The console script pip made for name, beside this interpreter (the venv's bin)."""
    path = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), name)
    if not os.access(path, os.X_OK):
        raise InstallError("%s not found beside %s: install the package with pip first" % (name, sys.executable))
    return path


def link_agi_scripts(agi_dir: str) -> List[str]:
    """Symlink the three scripts into agi_dir; rerunning fixes stale links and
    leaves correct ones alone. A regular file of the same name is never replaced."""
    if not os.path.isdir(agi_dir):
        raise InstallError("%s is not a directory (is Asterisk installed? use --agi-dir)" % agi_dir)
    done = []
    for name in AGI_SCRIPTS:
        target, link = installed_script(name), os.path.join(agi_dir, name)
        if os.path.islink(link):
            if os.readlink(link) == target:
                done.append("%s already links to %s" % (link, target))
                continue
            os.unlink(link)
        elif os.path.exists(link):
            raise InstallError("%s exists and is not a link: move it away, then rerun" % link)
        os.symlink(target, link)
        done.append("%s -> %s" % (link, target))
    return done


# -- file ownership and the doctor ------------------------------------------------------
def user_ids(user: str):
    """(uid, primary gid, set of all gids) of a system user, or None when there is none."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    gids = {entry.pw_gid} | {group.gr_gid for group in grp.getgrall() if user in group.gr_mem}
    return entry.pw_uid, entry.pw_gid, gids


def can_access(path: str, user: str, want: int) -> bool:
    """Whether user may access path with os.R_OK/os.W_OK/os.X_OK bits `want`, by its
    mode bits (doctor runs as root, so os.access would always say yes)."""
    ids = user_ids(user)
    if ids is None:
        return False
    uid, _, gids = ids
    if uid == 0:
        return True
    info = os.stat(path)
    if info.st_uid == uid:
        shift = 6
    elif info.st_gid in gids:
        shift = 3
    else:
        shift = 0
    return ((info.st_mode >> shift) & want) == want


def hand_sqlite_to(path: str, user: str, created_folder: bool) -> List[str]:
    """After install-schema as root: give the SQLite file (and its WAL files, and the
    folder when we made it) to the user Asterisk runs as, or every call would fail
    open on a read-only database."""
    ids = user_ids(user)
    if os.geteuid() != 0 or ids is None:
        return []
    uid, gid, _ = ids
    done = []
    targets = [path + suffix for suffix in ("", "-wal", "-shm") if os.path.exists(path + suffix)]
    if created_folder:
        targets.append(os.path.dirname(path))
    for target in targets:
        os.chown(target, uid, gid)
        done.append("%s now owned by %s" % (target, user))
    return done


class Doctor:
    """Checks what a call needs on this host; every finding says what to fix."""

    def __init__(self, config_path: str, user: str, agi_dir: str):
        self.config_path, self.user, self.agi_dir = config_path, user, agi_dir
        self.findings: List[Tuple[bool, str]] = []

    def ok(self, text):
        self.findings.append((True, text))

    def fix(self, text):
        self.findings.append((False, text))

    def run(self) -> bool:
        from .config import ConfigError, load
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
        from .config import DEFAULT_PATH
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
        return True

    def _check_database(self, config):
        from .db import SCHEMA_VERSION, Database, DatabaseError, addressbook_triggers, plan_signature
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
                missing = set(addressbook_triggers(config.vip).values()) - set(database.triggers())
                if missing:
                    self.fix("address-book triggers missing (%s): run vipsticky install-schema --addressbook"
                             % ", ".join(sorted(missing)))
                elif database.installed_number_plan() != plan_signature(config.numbers):
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
        for name in AGI_SCRIPTS:
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
