"""The one registry of scripts (agi_scripts/scripts.py) and the places that must agree with it."""
import configparser
import importlib
import os

from agi_scripts.scripts import NAMES, SCRIPTS, by_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_setup_cfg_installs_exactly_the_registered_scripts():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    entries = dict(line.split("=", 1) for line in parser["options.entry_points"]["console_scripts"].split("\n")
                   if line.strip())
    entries = {name.strip(): target.strip() for name, target in entries.items()}
    assert entries.pop("vipsticky") == "agi_scripts.cli:main"
    assert entries == {name: "agi_scripts.%s:main" % name for name in NAMES}


def test_each_script_module_declares_itself_once():
    assert NAMES == ("vip_or_not", "sticky_route", "delnum")
    for script in SCRIPTS:
        module = importlib.import_module("agi_scripts." + script.name)
        assert module.SCRIPT is script and by_name(script.name) is script
        assert module.main == script.main
        assert (script.handle, script.fail_open) == (module.handle, module.fail_open)
    assert by_name("nope") is None and by_name("") is None
