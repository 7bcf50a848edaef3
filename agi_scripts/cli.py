"""vipsticky: schema install, cron purge and admin work. Each command is one call
into the modules the AGI scripts use, so the CLI and a call never disagree.

Errors are one line on stderr and a non-zero exit (1: the work failed, 2: the
command line was wrong). The per-call scripts never import this module.
"""
import csv
import json
import re
import sys

import click

from . import config as config_module
from . import fastagi
from .addressbook import remove as remove_addressbook, script as addressbook_script, update as update_addressbook
from .config import ConfigError
from .database import Database, DatabaseError
from .demo import run_demo
from .doctor import Doctor
from .install import InstallError, SqliteHandover, link_agi_scripts
from .number_keys import number_key
from .rules import label_problem, shown, valid_agent, valid_queue
from .schema import install_schema, schema_script

PRIORITY = click.IntRange(*config_module.PRIORITY_LIMITS)  # QUEUE_PRIO values an admin may give
ADMIN_QUERY_TIMEOUT = 600  # seconds: a purge or sync may read for long; a call never does


class Failure(click.ClickException):
    """One clear line, exit 1."""


class _Context:
    def __init__(self, config_path):
        self.config_path = config_path
        self._config = None
        self._database = None

    @property
    def config(self):
        if self._config is None:
            self._config = config_module.load(self.config_path)
        return self._config

    @property
    def database(self):
        if self._database is None:
            self._database = Database(self.config.database, query_timeout=ADMIN_QUERY_TIMEOUT, breaker=False)
        return self._database

    def key(self, number):
        key = number_key(number, self.config.numbers)
        if key is None:
            raise Failure("%s is not a usable external number (see the number rules in README)"
                          % json.dumps(number[:80]))
        return key

    @staticmethod
    def queue(queue):
        """A --queue value: None (every scope), '' (the global scope) or a usable name."""
        if queue and not valid_queue(queue):
            raise Failure("%s is not a usable queue name" % json.dumps(queue[:80]))
        return queue


pass_context = click.make_pass_decorator(_Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", envvar="VIPSTICKY_CONFIG",
              help="Config file (default: $VIPSTICKY_CONFIG or %s)." % config_module.DEFAULT_PATH)
@click.pass_context
def cli(ctx, config_path):
    """VIP callers first and sticky agents for Asterisk queues."""
    ctx.obj = _Context(config_path)


@cli.command("install-schema")
@click.option("--addressbook", is_flag=True, help="Also index PHP Address Book (MySQL/MariaDB only).")
@click.option("--sql", "print_sql", is_flag=True, help="Print the SQL instead of running it.")
@click.option("--user", default="asterisk", show_default=True,
              help="Run as root, a new SQLite file is handed to this user (the one Asterisk runs as).")
@pass_context
def install_schema_command(context, addressbook, print_sql, user):
    """Create or upgrade the tables (safe to rerun)."""
    config = context.config
    if addressbook and config.database.dialect != "mysql":
        raise Failure("--addressbook needs a mysql:// database url: PHP Address Book lives in MySQL/MariaDB")
    if print_sql:
        click.echo(schema_script(config.database.dialect) + (addressbook_script(config) if addressbook else ""),
                   nl=False)
        return
    handover = None
    if config.database.dialect == "sqlite":
        handover = SqliteHandover(config.database.path, user)
        handover.prepare()
    for line in install_schema(context.database, config, addressbook=addressbook):
        say(line)
    if handover is not None:
        context.database.close()  # SQLite removes its -wal and -shm files with the last connection
        for line in handover.finish():
            say(line)


@cli.command()
@click.argument("number")
@click.option("--queue", default=None, help="Only this queue's binding (default: every scope).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@pass_context
def lookup(context, number, queue, as_json):
    """What a call from NUMBER gets: VIP priority and live bindings."""
    config = context.config
    queue = context.queue(queue)
    key = number_key(number, config.numbers)
    found = context.database.vip_lookup(key, config.vip) if key else None
    bindings = context.database.bindings(key=key, queue=queue) if key else []
    result = {
        "number": number, "key": key, "vip": found is not None,
        "priority": found[0] if found else config.vip.normal_priority,
        "label": found[1] if found else "", "source": found[2] if found else None,
        "bindings": [{"agent": agent, "queue": scope, "seconds_left": left} for _, scope, agent, left in bindings],
    }
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    if key is None:
        say("%s: not a usable external number: QUEUE_PRIO=%d, never bound"
                   % (json.dumps(number[:80], ensure_ascii=False), config.vip.normal_priority))
        return
    if found:
        say("%s: VIP, QUEUE_PRIO=%d, label %s (from %s)" % (key, found[0], json.dumps(found[1], ensure_ascii=False),
                                                               found[2]))
    else:
        say("%s: not VIP, QUEUE_PRIO=%d" % (key, config.vip.normal_priority))
    for binding in result["bindings"]:
        say("  bound to %s in %s for %d s more" % (binding["agent"], _scope(binding["queue"]),
                                                          binding["seconds_left"]))
    if not bindings:
        say("  no live binding" + ("" if queue is None else " in " + _scope(queue)))


@cli.group()
def vip():
    """The project's own VIP list (table vip_numbers)."""


@vip.command("add")
@click.argument("number")
@click.option("--priority", type=PRIORITY, default=None,
              help="QUEUE_PRIO for this caller (default: [vip] priority).")
@click.option("--label", default="", help="Shown to the dialplan as VIP_LABEL.")
@pass_context
def vip_add(context, number, priority, label):
    """Add or update a VIP number."""
    key = context.key(number)
    priority = context.config.vip.priority if priority is None else priority
    context.database.vip_add(key, priority, _label(label))
    say("%s is VIP with priority %d" % (key, priority))


@vip.command("remove")
@click.argument("number")
@pass_context
def vip_remove(context, number):
    """Remove a VIP number."""
    key = context.key(number)
    if not context.database.vip_remove(key):
        raise Failure("%s is not in the VIP list" % key)
    say("%s removed from the VIP list" % key)


@vip.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON list.")
@pass_context
def vip_list(context, as_json):
    """List the VIP table."""
    rows = context.database.vip_list()
    if as_json:
        click.echo(json.dumps([{"key": k, "priority": p, "label": l} for k, p, l in rows], ensure_ascii=False))
        return
    for key, priority, label in rows:
        say("%-16s %6d  %s" % (key, priority, label))
    say("%d VIP numbers" % len(rows))


@vip.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@pass_context
def vip_import(context, csv_file):
    """Add or update VIP numbers from a CSV file: number[,priority[,label]] per line
    (a first line starting with "number" is a header). All or nothing."""
    rows = []
    with open(csv_file, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next_line = 1
        for row in reader:
            line, next_line = next_line, reader.line_num + 1  # a quoted label may span lines
            if not "".join(row).strip() or (line == 1 and row[0].strip().lower() == "number"):
                continue
            try:
                key = context.key(row[0])
                priority = context.config.vip.priority
                if len(row) > 1 and row[1].strip():
                    priority = PRIORITY.convert(row[1].strip(), None, None)
                rows.append((key, priority, _label(row[2] if len(row) > 2 else "")))
            except click.BadParameter as error:
                raise Failure("%s line %d: priority %s" % (csv_file, line, error.message)) from None
            except Failure as error:
                raise Failure("%s line %d: %s" % (csv_file, line, error.message)) from None
    count = context.database.vip_import(rows)
    say("imported %d VIP numbers" % count)


@vip.command("sync")
@pass_context
def vip_sync(context):
    """Bring the PHP Address Book index to the current [numbers] plan (function and
    triggers made anew when made for another plan) and rebuild it; lists the entries
    that give no number key."""
    if context.config.database.dialect != "mysql":
        raise Failure("vip sync needs the PHP Address Book on MySQL/MariaDB; the database url is SQLite")
    for line in update_addressbook(context.database, context.config):
        say(line)


@vip.command("uninstall-addressbook")
@pass_context
def vip_uninstall_addressbook(context):
    """Remove everything vipsticky added to PHP Address Book's database (triggers, function,
    procedure, the key table, one index); PHP Address Book's own tables are left as before."""
    if context.config.database.dialect != "mysql":
        raise Failure("the address book lives in MySQL/MariaDB; the database url is SQLite")
    for line in remove_addressbook(context.database, context.config.vip):
        say(line)


@cli.command()
@pass_context
def purge(context):
    """Delete expired bindings (for cron, every minute)."""
    say("purged %d expired bindings" % context.database.purge())


@cli.group()
def bindings():
    """Sticky bindings: caller -> agent, per queue."""


@bindings.command("list")
@click.option("--queue", default=None, help="Only this queue ('' is the global scope).")
@click.option("--agent", default=None, help="Only this agent interface, e.g. PJSIP/alena.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list.")
@pass_context
def bindings_list(context, queue, agent, as_json):
    """List live bindings."""
    rows = context.database.bindings(queue=queue, agent=agent)
    if as_json:
        click.echo(json.dumps([{"key": k, "queue": q, "agent": a, "seconds_left": s} for k, q, a, s in rows],
                              ensure_ascii=False))
        return
    for key, queue_name, agent_name, left in rows:
        say("%-16s %-20s %-30s %8d s" % (key, _scope(queue_name), agent_name, left))
    say("%d live bindings" % len(rows))


@bindings.command("set")
@click.argument("number")
@click.argument("agent")
@click.option("--queue", default="", help="Queue scope (default: the global scope).")
@pass_context
def bindings_set(context, number, agent, queue):
    """Bind NUMBER to AGENT (a dialable interface such as PJSIP/alena)."""
    key = context.key(number)
    if not valid_agent(agent):
        raise Failure("%s is not one dialable interface Tech/resource" % json.dumps(agent[:80]))
    queue = context.queue(queue)
    ttl = context.config.sticky.for_queue(queue).ttl
    context.database.remember(key, queue, agent, ttl)
    say("%s bound to %s in %s for %d s" % (key, agent, _scope(queue), ttl))


@bindings.command("delete")
@click.argument("number")
@click.option("--queue", default=None, help="Only this queue's binding (default: every scope).")
@pass_context
def bindings_delete(context, number, queue):
    """Delete NUMBER's binding."""
    key = context.key(number)
    removed = context.database.forget(key, queue)
    say("%d binding%s of %s deleted" % (removed, "" if removed == 1 else "s", key))


@bindings.command("move-technology")
@click.argument("old")
@click.argument("new")
@pass_context
def bindings_move_technology(context, old, new):
    """Rebind every OLD/name agent to NEW/name, e.g. SIP PJSIP: the move every chan_sip site
    makes before Asterisk 21, which has no chan_sip."""
    for technology in (old, new):
        if not re.match(r"^[A-Za-z][A-Za-z0-9_]{0,31}$", technology):
            raise Failure("%s is not a channel technology such as SIP or PJSIP" % json.dumps(technology[:40]))
    moved = context.database.move_technology(old, new)
    say("%d binding%s moved from %s/ to %s/" % (moved, "" if moved == 1 else "s", old, new))


@cli.command("install-agi")
@click.option("--asterisk-conf", metavar="PATH",
              help="asterisk.conf whose astagidir gets the links (default: /etc/asterisk/asterisk.conf, "
                   "else /var/lib/asterisk/agi-bin).")
@click.option("--agi-dir", default=None, type=click.Path(file_okay=False), help="This folder, not astagidir.")
def install_agi(asterisk_conf, agi_dir):
    """Link vip_or_not, sticky_route and delnum into Asterisk's agi-bin (astagidir)."""
    from .asterisk_host import read_asterisk_conf
    for line in link_agi_scripts(agi_dir or read_asterisk_conf(asterisk_conf).agi_dir):
        say(line)


@cli.command()
@click.option("--user", default="asterisk", show_default=True, help="The user Asterisk runs as.")
@click.option("--asterisk-conf", metavar="PATH",
              help="asterisk.conf: astagidir, runuser; passed to asterisk -C (default: /etc/asterisk/asterisk.conf).")
@click.option("--agi-dir", default=None, type=click.Path(file_okay=False), help="This folder, not astagidir.")
@click.option("--asterisk", "asterisk_binary", metavar="PATH",
              help="The asterisk binary for asterisk -rx (default: asterisk on PATH).")
@pass_context
def doctor(context, user, asterisk_conf, agi_dir, asterisk_binary):
    """Prove a call works as Asterisk's user (each script run once with a test number), check
    the config, database, agi-bin links and a running Asterisk's queues and * feature; say what to fix."""
    checks = Doctor(context.config_path or config_module.config_path(), user, agi_dir, asterisk_conf,
                    asterisk_binary)
    healthy = checks.run()
    for good, text in checks.findings:
        say(("ok   " if good else "FIX  ") + text)
    if not healthy:
        raise Failure("%d problem(s) to fix" % sum(not good for good, _ in checks.findings))


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the throwaway database and config.")
def demo(keep):
    """Replay a few calls through the real AGI scripts on a throwaway SQLite database."""
    run_demo(click.echo, keep=keep)


@cli.command()
@click.option("--listen", default="127.0.0.1:4573", show_default=True, metavar="HOST:PORT",
              help="Address for AGI(agi://HOST:PORT/vip_or_not) and friends; other than loopback needs --allow.")
@click.option("--allow", multiple=True, metavar="ADDRESS[/BITS]",
              help="Clients allowed to connect (repeat, or separate with commas; default: [fastagi] allow, "
                   "or anyone on a loopback --listen).")
@click.option("--pool", "pool_size", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Database connections kept open; a call that finds all busy fails open.")
@click.option("--max-connections", type=click.IntRange(1, 1000), default=fastagi.MAX_CONNECTIONS,
              show_default=True, help="Connections open at once; the longest idle one makes room.")
@click.option("--deadline", type=click.FloatRange(0.5, 3600), default=fastagi.DEADLINE, show_default=True,
              help="Seconds a connection may stay open, environment and commands together.")
@pass_context
def serve(context, listen, allow, pool_size, max_connections, deadline):
    """FastAGI server for busy centres (the same handlers as the per-call scripts)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter("use HOST:PORT, e.g. 127.0.0.1:4573", param_hint="--listen")
    allowed = [entry.strip() for value in allow for entry in value.split(",") if entry.strip()]
    try:
        fastagi.serve(context.config, host.strip("[]") or "127.0.0.1", int(port), pool_size,
                      allow=allowed or None, max_connections=max_connections, deadline=deadline)
    except fastagi.ServeError as error:
        raise Failure(str(error)) from None


def say(text, err=False):
    """One line of text output: control and bidirectional characters escaped, since labels
    and queue names come from people and a terminal would obey them."""
    click.echo(shown(text), err=err)


def _scope(queue):
    return "queue %s" % queue if queue else "the global scope"


def _label(label):
    problem = label_problem(label)
    if problem:
        raise Failure(problem)
    return label


def main(argv=None):
    """Run the CLI; every failure is one line on stderr."""
    try:
        cli.main(args=argv, prog_name="vipsticky", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.Abort:
        say("vipsticky: aborted", err=True)
        return 1
    except click.UsageError as error:
        say("vipsticky: %s" % " ".join(error.format_message().split()), err=True)
        return 2
    except click.ClickException as error:
        say("vipsticky: %s" % error.format_message(), err=True)
        return error.exit_code
    except (ConfigError, DatabaseError, InstallError) as error:
        say("vipsticky: %s" % error, err=True)
        return 1
    except OSError as error:
        say("vipsticky: %s" % (error.strerror and "%s: %s" % (error.filename or "", error.strerror)
                                      or error), err=True)
        return 1
    except Exception as error:  # a bug: still one line, never a traceback
        say("vipsticky: internal error: %s: %s" % (type(error).__name__, " ".join(str(error).split())[:300]),
                   err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
