"""The registry of AGI scripts: every script, declared once in its own module, listed here.

FastAGI routing, install-agi, the doctor, the demo and the tests read this list;
setup.cfg's console_scripts name the same scripts (a test holds the two equal).
"""
from . import delnum, sticky_route, vip_or_not

SCRIPTS = (vip_or_not.SCRIPT, sticky_route.SCRIPT, delnum.SCRIPT)
NAMES = tuple(script.name for script in SCRIPTS)


def by_name(name: str):
    """The Script called name, or None."""
    for script in SCRIPTS:
        if script.name == name:
            return script
    return None
