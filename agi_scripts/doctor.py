"""`vipsticky doctor`: check what a call needs on this host and say what to fix."""
from __future__ import annotations

import os
import re

from .addressbook import installed_number_plan, plan_signature, statements, trigger_failures
from .asterisk_host import (DEFAULT_AGI_DIR, HELPER_CONTEXTS, INBOUND_CONTEXT, UNBIND_FEATURE, RunningAsterisk,
                            dialplan_queues, is_true, read_asterisk_conf, read_config)
from .call_proof import CallPathProof, reserved_number
from .config import DEFAULT_PATH, ConfigError, load
from .database import Database, DatabaseError
from .install import InstallError, can_access, installed_script, user_ids
from .rules import valid_queue
from .schema import SCHEMA_VERSION
from .scripts import NAMES
from .sticky_route import HANGUP_CONTEXT

# What install-schema --addressbook creates, by kind, as its SQL names it.
CREATED = re.compile(r"^CREATE (TABLE IF NOT EXISTS|FUNCTION|PROCEDURE|TRIGGER) (\w+)")
ROUTINES = ("SELECT ROUTINE_NAME, ROUTINE_COMMENT FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = DATABASE()")


class Doctor:
    """Checks what a call needs on this host; every finding says what to fix.

    agi_dir None: astagidir of asterisk.conf (asterisk_conf, else the default file). A
    running Asterisk is asked through `asterisk -rx` (asterisk_binary, else the one on PATH)."""

    def __init__(self, config_path: str, user: str, agi_dir: str | None = None, asterisk_conf: str | None = None,
                 asterisk_binary: str | None = None):
        self.config_path, self.user, self.agi_dir = config_path, user, agi_dir
        self.asterisk_conf, self.asterisk_binary = asterisk_conf, asterisk_binary
        self.findings: list[tuple[bool, str]] = []

    def ok(self, text):
        self.findings.append((True, text))

    def fix(self, text):
        self.findings.append((False, text))

    def run(self) -> bool:
        if user_ids(self.user) is None:
            self.fix("no system user %s: pass --user with the user Asterisk runs as" % self.user)
            return False
        self._read_asterisk_conf()
        config = None
        if self._check_config_file():
            try:
                config = load(self.config_path)
                self.ok("config %s parses" % self.config_path)
            except ConfigError as error:
                self.fix("config: %s" % error)
        if config is not None:
            self.ok("number plan %s (test number %s)" % (plan_signature(config.numbers),
                                                         reserved_number(config.numbers)))
            self._check_database(config)
        self._check_agi_links()
        queues = self._check_running_asterisk(config)
        if config is None:
            self.fix("call path not proven: the config does not load")
        else:
            proven, text = CallPathProof(config, self.config_path, self.user, self.agi_dir,
                                         queues[0] if queues else "").run()
            self.findings.append((proven, text))
        return all(good for good, _ in self.findings)

    def _read_asterisk_conf(self):
        try:
            host = read_asterisk_conf(self.asterisk_conf)
        except InstallError as error:
            self.fix(str(error))
            self.agi_dir = self.agi_dir or DEFAULT_AGI_DIR
            return
        self.agi_dir = self.agi_dir or host.agi_dir
        if host.run_user and host.run_user != self.user:
            self.fix("%s runs Asterisk as %s (runuser): rerun vipsticky doctor --user %s"
                     % (host.path, host.run_user, host.run_user))

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
        else:
            self._check_servers(settings)
        database = Database(settings)
        try:
            version = database.schema_version()
            if version != SCHEMA_VERSION:
                self.fix("database %s has schema version %s, this vipsticky needs %d: run vipsticky install-schema"
                         % (settings.safe_url, version, SCHEMA_VERSION))
            else:
                self.ok("database %s reachable, schema version %d" % (settings.safe_url, version))
            if config.vip.source != "table":
                self._check_addressbook(database, config)
        except DatabaseError as error:
            self.fix("database: %s" % error)
        finally:
            database.close()

    def _check_servers(self, settings):
        """Each server of a url with several hosts, and any Galera node: reachable, in the
        primary component and synced, or what happened and what to do. A single server
        that is no Galera node adds nothing here."""
        from .database import reason
        from .dialects import MySQL
        servers = (None,) if settings.unix_socket else settings.servers
        for server in servers:
            name = settings.unix_socket or ("[%s]:%d" if ":" in server[0] else "%s:%d") % server
            try:
                connection = MySQL.connect(settings, False, settings.connect_timeout, server, settings.connect_timeout)
            except Exception as error:  # the server's own reason, without the url
                if len(servers) > 1:
                    self.fix("database server %s unreachable (%s): calls use the other servers meanwhile; start it "
                             "(a Galera node that crashed: mariadbd --wsrep-recover, then start it with "
                             "--wsrep-start-position=<the recovered position> to catch up by IST)"
                             % (name, reason(error)))
                continue
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_cluster_size', "
                                   "'wsrep_cluster_status', 'wsrep_local_state_comment', 'wsrep_last_committed')")
                    status = dict(cursor.fetchall())
                    cursor.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")
                    galera = dict(cursor.fetchall()).get("wsrep_on") == "ON"
            except Exception as error:
                self.fix("database server %s: %s" % (name, reason(error)))
                continue
            finally:
                connection.close()
            if not galera:
                if len(servers) > 1:
                    self.ok("database server %s reachable" % name)
                continue
            size, state = status.get("wsrep_cluster_size", "?"), status.get("wsrep_local_state_comment", "?")
            if status.get("wsrep_cluster_status") != "Primary":
                self.fix("Galera node %s is in a non-Primary component (%s node(s) in view, wsrep_ready=%s, last "
                         "committed %s): it lost quorum, so it refuses every call's query (1047) and calls fail open. "
                         "If the other nodes are down for good, bootstrap the survivor with the highest last "
                         "committed: SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'; then start the others "
                         "one at a time (mariadbd --wsrep-recover, then --wsrep-start-position)"
                         % (name, size, status.get("wsrep_ready", "?"), status.get("wsrep_last_committed", "?")))
            elif status.get("wsrep_ready") != "ON" or state not in ("Synced", "Donor/Desynced"):
                self.fix("Galera node %s is %s, not Synced (cluster of %s): calls skip it until it has caught up"
                         % (name, state, size))
            else:
                self.ok("Galera node %s %s, Primary component of %s node(s)" % (name, state, size))

    def _check_addressbook(self, database, config):
        """Side table, routines and triggers all there and made for this [numbers] plan, and no
        failure swallowed by a trigger since the last sync (the index would miss entries)."""
        wanted = {}  # name -> (kind, the COMMENT its CREATE gives, or None)
        for sql in statements(config.numbers, config.vip):
            created = CREATED.match(sql)
            if created:
                comment = re.search(r" COMMENT '([^']*)'", sql)
                wanted[created.group(2)] = (created.group(1).split()[0].lower(), comment and comment.group(1))
        routines = dict(database.run(ROUTINES, fetch="all"))
        present = set(database.tables()) | set(database.triggers()) | set(routines)
        missing = [name for name in wanted if name not in present]
        stale = [name for name, (_, comment) in wanted.items() if comment and name in routines
                 and routines[name] != comment]
        failures = trigger_failures(database)
        if missing:
            what = "triggers" if any(wanted[name][0] == "trigger" for name in missing) else "side table or function"
            self.fix("address-book %s missing (%s): run vipsticky install-schema --addressbook"
                     % (what, ", ".join("%s %s" % (wanted[name][0], name) for name in missing)))
        elif stale or installed_number_plan(database) != plan_signature(config.numbers):
            self.fix("the address-book %s made for another [numbers] plan: run vipsticky install-schema "
                     "--addressbook" % ("function %s was" % ", ".join(stale) if stale else "index was"))
        elif failures:
            self.fix("the address-book triggers failed %d time(s) since the index was built (last: %s): "
                     "entries may be missing from it; run vipsticky vip sync" % failures)
        else:
            self.ok("address-book side table, function and triggers present, made for this [numbers] plan")

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


    def _check_running_asterisk(self, config) -> list[str]:
        """What a running Asterisk says: where it finds AGI scripts, as whom and with which
        config they run, the dialplan's queues, the * feature, the hangup handler's context
        when config (None: unreadable) sets min_talk. The queues named in the dialplan, in
        order (none when no Asterisk answers)."""
        live = RunningAsterisk(self.asterisk_binary, self.asterisk_conf)
        settings = live.settings()
        if settings is None:
            self.ok("no running Asterisk answers (%s): its dialplan, queues and * feature not checked"
                    % live.why_not)
            return []
        agi_dir = settings.get("AGI Scripts directory")
        if agi_dir and os.path.realpath(agi_dir) != os.path.realpath(self.agi_dir):
            self.fix("the running Asterisk finds AGI scripts in %s, not %s: vipsticky install-agi --agi-dir %s"
                     % (agi_dir, self.agi_dir, agi_dir))
        else:
            self.ok("the running Asterisk %s finds AGI scripts in %s" % (settings.get("Version", ""), self.agi_dir))
        runs_as = settings.get("User name and group", "").partition("/")[0]
        if runs_as and runs_as != self.user:
            self.fix("the running Asterisk runs as %s: rerun vipsticky doctor --user %s" % (runs_as, runs_as))
        # The scripts read $VIPSTICKY_CONFIG of Asterisk's environment, else the default file.
        their_config = live.evaluate("ENV(VIPSTICKY_CONFIG)")
        if their_config is not None and os.path.realpath(their_config or DEFAULT_PATH) != os.path.realpath(
                self.config_path):
            self.fix("the running Asterisk's scripts read %s (its VIPSTICKY_CONFIG), not %s: check that one "
                     "(vipsticky --config %s doctor)" % (their_config or DEFAULT_PATH, self.config_path,
                                                         their_config or DEFAULT_PATH))
        for module in ("res_agi", "app_queue"):
            if live.module_running(module) is False:
                self.fix("module %s is not running in Asterisk: asterisk -rx 'module load %s.so'" % (module, module))
        defined = live.feature_defined(UNBIND_FEATURE)
        if defined is False:
            self.fix("the * feature %s is not defined: add the [applicationmap] line of features.conf.example "
                     "to features.conf, then asterisk -rx 'module reload features'" % UNBIND_FEATURE)
        elif defined:
            self.ok("the * feature %s is defined" % UNBIND_FEATURE)
        inbound = live.context(INBOUND_CONTEXT)
        if inbound is None:
            self.ok("no context %s in the running dialplan (a dialplan of your own?): its queues not checked"
                    % INBOUND_CONTEXT)
            return []
        for context in HELPER_CONTEXTS:
            if live.context(context) is None:
                self.fix("context %s is missing from the running dialplan, %s calls it: load the whole "
                         "extensions.conf.example (or .ael), then asterisk -rx 'dialplan reload' (or 'ael reload')"
                         % (context, INBOUND_CONTEXT))
        if config is not None and config.sticky.uses_min_talk and live.context(HANGUP_CONTEXT) is None:
            self.fix("context %s is missing from the running dialplan, and [sticky] min_talk is set: sticky_route "
                     "lookup pushes it as the caller's hangup handler, so no call would bind; load it from "
                     "extensions.conf.example (or .ael), then asterisk -rx 'dialplan reload' (or 'ael reload')"
                     % HANGUP_CONTEXT)
        queues = [name for name in dialplan_queues(inbound) if valid_queue(name)]
        # `queue show` does not print setinterfacevar, and no dialplan function returns it:
        # queues.conf in the running Asterisk's astetcdir is read instead (with its #include
        # files and templates). A queue that is not there (realtime) cannot be checked.
        sections, templates = read_config(os.path.join(settings.get("Configuration directory", "/etc/asterisk"),
                                                       "queues.conf"))
        for name in queues:
            if live.queue_exists(name) is False:
                self.fix("queue %s, named in %s, does not exist: add [%s] from queues.conf.example to queues.conf, "
                         "then asterisk -rx 'module reload app_queue'" % (name, INBOUND_CONTEXT, name))
            elif name not in sections or name in templates:
                self.ok("queue %s exists; it is not in queues.conf (realtime?): check setinterfacevar=yes "
                        "there yourself" % name)
            elif not is_true(sections[name].get("setinterfacevar")):
                self.fix("queue %s lacks setinterfacevar=yes in queues.conf: sticky_route remember cannot learn "
                         "who answered; add it, then asterisk -rx 'module reload app_queue'" % name)
            else:
                self.ok("queue %s exists, setinterfacevar=yes" % name)
        return queues


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
