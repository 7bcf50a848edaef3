"""The files shipped beside the code (sample config, dialplans, cron file, systemd unit, SQL): found and written out.

They live once, at the top of the repository; the build copies them into the
installed package as agi_scripts/shipped (setup.cfg), so a wheel has them too.
"""
import os

# What `vipsticky examples` writes, by the path the README's install steps use.
EXAMPLES = ("vipsticky.conf.example", "extensions.conf.example", "extensions.ael.example", "queues.conf.example",
            "features.conf.example", "vipsticky-fastagi.service.example", "cron/vipsticky")
HERE = os.path.dirname(os.path.abspath(__file__))
PLACES = (os.path.join(HERE, "shipped"), os.path.dirname(HERE))  # installed; a checkout run in place


def shipped_path(name: str) -> str:
    """Where the shipped file `name` (e.g. "cron/vipsticky") is; OSError when nowhere."""
    for place in PLACES:
        path = os.path.join(place, *name.split("/"))
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(2, "not shipped with this vipsticky (a broken install?)", name)


def write_examples(folder: str):
    """Copy every example into folder (made if missing), replacing older copies; yields
    each path written."""
    for name in EXAMPLES:
        with open(shipped_path(name), "rb") as source:
            content = source.read()
        target = os.path.join(folder, *name.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(content)
        yield target
