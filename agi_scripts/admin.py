"""Installation work the CLI does on the Asterisk host (no SQL here: that is db.py)."""
import os
import sys
from typing import List

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
