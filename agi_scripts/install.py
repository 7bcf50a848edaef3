"""Installing on the Asterisk host: AGI links, file ownership, what a system user may access.

No SQL here: the schema is schema.py's job.
"""
from __future__ import annotations

import grp
import os
import pwd
import sys

from .scripts import NAMES


class InstallError(Exception):
    """Something on the host stops an install step; the message says what to fix."""


def installed_script(name: str) -> str:
    """The console script pip made for name, beside this interpreter (the venv's bin)."""
    path = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), name)
    if not os.access(path, os.X_OK):
        raise InstallError("%s not found beside %s: install the package with pip first" % (name, sys.executable))
    return path


def link_agi_scripts(agi_dir: str) -> list[str]:
    """Symlink the three scripts into agi_dir; rerunning fixes stale links and
    leaves correct ones alone. A regular file of the same name is never replaced."""
    if not os.path.isdir(agi_dir):
        raise InstallError("%s is not a directory (is Asterisk installed? use --agi-dir)" % agi_dir)
    done = []
    for name in NAMES:
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


def blocked_folder(path: str, user: str) -> str | None:
    """The first folder on the way to path that user may not enter (no search permission,
    by mode bits), along path as written and then with every link resolved; else None.
    A process of that user gets Permission denied there, whatever the file's own mode."""
    for way in (os.path.abspath(path), os.path.realpath(path)):
        chain, folder = [], os.path.dirname(way)
        while True:
            chain.append(folder)
            if os.path.dirname(folder) == folder:
                break
            folder = os.path.dirname(folder)
        for folder in reversed(chain):
            if not os.path.isdir(folder):
                break
            if not can_access(folder, user, os.X_OK):
                return folder
    return None


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


class SqliteHandover:
    """install-schema on SQLite: the file made exclusively and, run as root, handed to the
    user Asterisk runs as (else every call would fail open on a read-only database).

    The folder usually belongs to that user, who could plant a symbolic link there
    for root to follow: so no link is ever followed, the file is created with
    O_EXCL, and only what this run created changes owner, through its own descriptor."""

    def __init__(self, path: str, user: str):
        self.path = path
        self.ids = user_ids(user) if os.geteuid() == 0 else None
        self.user = user
        self.done: list[str] = []
        self._existed: set[str] = set()

    def prepare(self) -> None:
        """Before SQLite opens the file: refuse links, make the folder and the file."""
        for target in self._files():
            if os.path.islink(target):
                raise InstallError("%s is a symbolic link: refusing to follow it (remove it, then rerun)" % target)
            if os.path.lexists(target):
                self._existed.add(target)
        folder = os.path.dirname(self.path) or "."
        if not os.path.isdir(folder):
            os.makedirs(folder)
            self._hand_over(folder, os.O_RDONLY | os.O_DIRECTORY)
        if self.path not in self._existed:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
            self._hand_over_descriptor(descriptor, self.path)

    def finish(self) -> list[str]:
        """After the database is closed: hand over the side files this run left behind."""
        for target in self._files()[1:]:
            if target not in self._existed and os.path.lexists(target):
                self._hand_over(target, os.O_RDONLY)
        return self.done

    def _files(self) -> list[str]:
        return [self.path] + [self.path + suffix for suffix in SQLITE_SIDE_FILES]

    def _hand_over(self, path: str, flags: int) -> None:
        if self.ids is not None:
            self._hand_over_descriptor(os.open(path, flags | os.O_NOFOLLOW), path)

    def _hand_over_descriptor(self, descriptor: int, path: str) -> None:
        try:
            if self.ids is not None:
                os.fchown(descriptor, self.ids[0], self.ids[1])
                self.done.append("%s now owned by %s" % (path, self.user))
        finally:
            os.close(descriptor)
