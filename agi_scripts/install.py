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


def hand_sqlite_to(path: str, user: str, created_folder: bool) -> list[str]:
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
