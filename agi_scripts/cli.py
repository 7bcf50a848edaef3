"""The vipsticky command: schema install, cron purge and admin work, a thin click layer.

Each command is one call into the modules the AGI scripts use, so the CLI and a call
never disagree.

Errors are one line on stderr and a non-zero exit (1: the work failed, 2: the
command line was wrong). The per-call scripts never import this module.
"""
import csv
import io
import json
import os
import sys

import click

from . import config as config_module
from . import fastagi
from .addressbook import remove as remove_addressbook, script as addressbook_script, update as update_addressbook
from .call import describe
from .config import ConfigError
from .database import Database, DatabaseError
from .demo import run_demo
from .doctor import Doctor
from .events import ingest
from .examples import write_examples
from .install import InstallError, SqliteHandover, link_agi_scripts
from .mysql_fixes import with_fix
from .number_keys import number_key
from .report import COLUMNS as REPORT_COLUMNS, daily, parse_since, table as report_table
from .rules import label_problem, shown, valid_agent, valid_queue, valid_technology
from .schema import install_schema, schema_script
from .scripts import NAMES
from .trial import DEVICE_STATES, lines as trial_lines, try_script

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

    @property
    def addressbook_database(self):
        """The database, for a command about PHP Address Book, which lives in MySQL/MariaDB."""
        if self.config.database.dialect != "mysql":
            raise Failure("PHP Address Book lives in MySQL/MariaDB; the [database] url is SQLite")
        return self.database

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


def _config_given(ctx, param, value):
    context = ctx.find_object(_Context)  # None only while click completes a command line
    if value is not None and context is not None:
        context.config_path = value


def _with_config(command):
    """command also takes --config after its name (vipsticky vip list --config PATH)."""
    command.params.append(click.Option(["--config"], metavar="PATH", expose_value=False, callback=_config_given,
                                       help="Config file (also accepted before the command's name)."))


class _Command(click.Command):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _with_config(self)


class _Group(click.Group):
    """A group whose commands take --config anywhere; without a command it prints its
    help, as it is, and exits 2 (the same with every click version)."""
    command_class = _Command

    def parse_args(self, ctx, args):
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help())
            ctx.exit(2)
        return super().parse_args(ctx, args)


class _SubGroup(_Group):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _with_config(self)


_Group.group_class = _SubGroup


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", envvar="VIPSTICKY_CONFIG",
              help="Config file (default: $VIPSTICKY_CONFIG or %s); also accepted after the command's name."
                   % config_module.DEFAULT_PATH)
@click.version_option(package_name="vipsticky", prog_name="vipsticky", message="%(prog)s %(version)s")
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


@cli.command("try")
@click.argument("script", type=click.Choice(NAMES), metavar="SCRIPT")
@click.argument("arguments", nargs=-1)
@click.option("--callerid", default="", metavar="NUMBER", help="The caller ID of the call (agi_callerid).")
@click.option("--agent", default="", metavar="INTERFACE",
              help="${MEMBERINTERFACE}: the agent who answered, for sticky_route remember.")
@click.option("--device-state", type=click.Choice(DEVICE_STATES), default="NOT_INUSE", show_default=True,
              help="What DEVICE_STATE() says of every agent.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@pass_context
def try_command(context, script, arguments, callerid, agent, device_state, as_json):
    """Run SCRIPT once as Asterisk runs it for a call from --callerid, on the real config and
    database (remember stores, delnum deletes, as a call would), and show the AGI exchange
    and the variables set. ARGUMENTS: those of AGI() after the script's name, e.g.
    `vipsticky try sticky_route lookup 89130751580 support`. The stand-in Asterisk has every
    queue, and every agent asked about is logged in to it and not paused."""
    result = try_script(script, arguments, callerid, context.config_path or config_module.config_path(), agent,
                        device_state)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    else:
        for line in trial_lines(result):
            say(line)
    if result["exit_code"] != 0:
        raise Failure("%s exited with %s: %s" % (script, result["exit_code"], " ".join(result["stderr"].split())[:300]))


@cli.command()
@click.argument("folder", default=".", type=click.Path(file_okay=False))
def examples(folder):
    """Write the sample config, both dialplans (.conf and .ael), the queues.conf and
    features.conf samples, cron/vipsticky and the systemd unit into FOLDER (default: here)."""
    for path in write_examples(folder):
        say("wrote %s" % path)


@cli.group()
def vip():
    """VIP numbers: the table vip_numbers, and PHP Address Book's (vip list)."""


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
@click.option("--json", "as_json", is_flag=True,
              help="A JSON list of key, priority, label; with the address book in [vip] source, also source "
                   "(table or addressbook) and group.")
@pass_context
def vip_list(context, as_json):
    """List the VIP numbers of [vip] source: the table vip_numbers, PHP Address Book's entries
    (with their group), or both, each with where it comes from."""
    vip = context.config.vip
    table = context.database.vip_list()
    entries = [{"key": k, "priority": p, "label": l} for k, p, l in table] if vip.source != "addressbook" else []
    if vip.source == "table":
        if as_json:
            click.echo(json.dumps(entries, ensure_ascii=False))
            return
        for entry in entries:
            say("%-16s %6d  %s" % (entry["key"], entry["priority"], entry["label"]))
        say("%s in table vip_numbers" % _count(len(entries), "VIP number"))
        return
    for entry in entries:
        entry.update(source="table", group=None)
    book = [{"key": k, "priority": p, "label": l, "source": "addressbook", "group": g}
            for k, p, l, g in context.database.addressbook_vip_list(vip)]
    if as_json:
        click.echo(json.dumps(entries + book, ensure_ascii=False))
        return
    for entry in entries + book:
        say("%-16s %6d  %-36s %s" % (entry["key"], entry["priority"], entry["label"],
                                     "table" if entry["source"] == "table" else
                                     "address book" + (", group %s" % entry["group"] if entry["group"] else "")))
    keys = {entry["key"] for entry in book}
    counts = ["%s from the address book%s" % (_count(len(keys), "VIP number"),
                                              " (%s)" % _count(len(book), "group membership") if vip.groups else "")]
    if vip.source == "both":
        counts.insert(0, "%s in table vip_numbers" % _count(len(entries), "VIP number"))
    elif table:
        counts.append("table vip_numbers holds %s, not used with [vip] source = addressbook"
                      % _count(len(table), "more number"))
    say("; ".join(counts))


@vip.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@pass_context
def vip_import(context, csv_file):
    """Add or update VIP numbers from a CSV file (UTF-8): number[,priority[,label]] per line,
    fields separated by , or ; as spreadsheets write them (the first of the two in the file
    decides). A first row without a digit is a header. All or nothing: a bad row is named
    by its line and nothing is imported."""
    rows = []
    for line, row in _csv_rows(csv_file):
        try:
            if len(row) > 3:
                raise Failure("%d fields, at most 3 (number, priority, label): quote a label that holds the "
                              "separator" % len(row))
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
    say("imported %s" % _count(count, "VIP number"))


def _csv_rows(path):
    """(line, fields) of each row of a CSV file that is neither blank nor the header."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise Failure("%s line %d: not UTF-8 text: save the file as CSV UTF-8"
                      % (path, data.count(b"\n", 0, error.start) + 1)) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_separator(text))
    next_line, first = 1, True
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise Failure("%s line %d: %s" % (path, next_line, error)) from None
        line, next_line = next_line, reader.line_num + 1  # a quoted label may span lines
        if not "".join(row).strip():
            continue
        header = first and not any(character.isdigit() for field in row for character in field)
        first = False
        if not header:
            yield line, row


def _separator(text):
    """, or ;, whichever comes first outside quotes (a number holds neither)."""
    quoted = False
    for character in text:
        if character == '"':
            quoted = not quoted
        elif character in ",;" and not quoted:
            return character
    return ","


@vip.command("sync")
@pass_context
def vip_sync(context):
    """Bring the PHP Address Book index to the current [numbers] plan (function and
    triggers made anew when made for another plan) and rebuild it; lists the entries
    that give no number key."""
    for line in update_addressbook(context.addressbook_database, context.config):
        say(line)


@vip.command("uninstall-addressbook")
@pass_context
def vip_uninstall_addressbook(context):
    """Remove everything vipsticky added to PHP Address Book's database (triggers, function,
    procedure, the key table, one index); PHP Address Book's own tables are left as before."""
    for line in remove_addressbook(context.addressbook_database, context.config.vip):
        say(line)


@cli.command()
@pass_context
def purge(context):
    """Delete expired bindings (for cron, every minute); move the calls' recorded outcomes
    from the spool file into the events table and delete those older than [log] events_days."""
    say("purged %s" % _count(context.database.purge(), "expired binding"))
    stored, pruned = _ingest(context), 0
    if context.config.events.enabled:
        pruned = context.database.prune_events(context.config.events.days)
    if stored:
        say("recorded %s" % _count(stored, "call event"))
    if pruned:
        say("deleted %s older than %d days" % (_count(pruned, "call event"), context.config.events.days))


def _ingest(context) -> int:
    """The spool's lines into the events table (also after [log] events = off: what was
    recorded before is kept); how many."""
    try:
        stored, skipped = ingest(context.database, context.config.events.spool)
    except OSError as error:
        raise Failure("cannot read the events spool: %s" % describe(error)) from None
    if skipped:
        click.echo("vipsticky: %s of %s skipped: not an event line" % (
            _count(skipped, "line"), context.config.events.spool), err=True)
    return stored


@cli.command()
@click.option("--since", default="7d", show_default=True, help="How far back: 30m, 12h, 7d, 2w.")
@click.option("--queue", default=None, help="Only this queue ('' is the global scope).")
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object per day and queue.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@pass_context
def report(context, since, queue, as_json, as_csv):
    """Calls, VIP calls, sticky hit rate and its misses, bindings made, * unbinds and
    wrong numbers (min_talk), per day and queue, from the recorded call outcomes."""
    if as_json and as_csv:
        raise click.UsageError("--json and --csv: choose one")
    try:
        seconds = parse_since(since)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    queue = context.queue(queue)
    _ingest(context)
    rows = daily(context.database, context.config.numbers, seconds, queue)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
    elif as_csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(out.getvalue(), nl=False)
    elif not rows:
        say("no call events in the last %s%s" % (since, "" if queue is None else " for %s" % _scope(queue)))
    else:
        for line in report_table(rows):
            say(line)


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
    say(_count(len(rows), "live binding"))


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
    say("%s of %s deleted" % (_count(removed, "binding"), key))


@bindings.command("move-technology")
@click.argument("old")
@click.argument("new")
@pass_context
def bindings_move_technology(context, old, new):
    """Rebind every OLD/name agent to NEW/name, e.g. SIP PJSIP: the move every chan_sip site
    makes before Asterisk 21, which has no chan_sip."""
    for technology in (old, new):
        if not valid_technology(technology):
            raise Failure("%s is not a channel technology such as SIP or PJSIP" % json.dumps(technology[:40]))
    moved = context.database.move_technology(old, new)
    say("%s moved from %s/ to %s/" % (_count(moved, "binding"), old, new))


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
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Processes sharing the port; they share --pool (each at least 1), --max-connections "
                   "is each one's [default: one per core].")
@pass_context
def serve(context, listen, allow, pool_size, max_connections, deadline, workers):
    """FastAGI server for busy centres (the same handlers as the per-call scripts). SIGHUP
    (systemctl reload) reads the config file again; SIGTERM finishes the calls in flight, then stops.
    Both reach every worker process."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter("use HOST:PORT, e.g. 127.0.0.1:4573", param_hint="--listen")
    allowed = [entry.strip() for value in allow for entry in value.split(",") if entry.strip()]
    try:
        fastagi.serve(context.config, host.strip("[]") or "127.0.0.1", int(port), pool_size,
                      allow=allowed or None, max_connections=max_connections, deadline=deadline,
                      workers=workers or len(os.sched_getaffinity(0)))
    except fastagi.ServeError as error:
        raise Failure(str(error)) from None


def say(text, err=False):
    """One line of text output: control and bidirectional characters escaped, since labels
    and queue names come from people and a terminal would obey them."""
    click.echo(shown(text), err=err)


def _scope(queue):
    return "queue %s" % queue if queue else "the global scope"


def _count(number, noun):
    """1 live binding, 2 live bindings."""
    return "%d %s%s" % (number, noun, "" if number == 1 else "s")


def _label(label):
    problem = label_problem(label)
    if problem:
        raise Failure(problem)
    return label


def main(argv=None):
    """Run the CLI; every failure is one line on stderr."""
    try:
        # Without standalone mode click returns the code of an exit (help, --version) and
        # the command's return value (None) otherwise.
        code = cli.main(args=argv, prog_name="vipsticky", standalone_mode=False)
        if isinstance(code, int):
            return code
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
    except DatabaseError as error:
        say("vipsticky: %s" % with_fix(str(error)), err=True)
        return 1
    except (ConfigError, InstallError) as error:
        say("vipsticky: %s" % error, err=True)
        return 1
    except OSError as error:
        say("vipsticky: %s" % (error.strerror and "%s: %s" % (error.filename or "", error.strerror)
                                      or error), err=True)
        return 1
    except Exception as error:  # a bug: still one line, never a traceback
        say("vipsticky: %s" % describe(error), err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
