"""PHP Address Book (chatelao/php-addressbook) tables and write statements, for tests.

Three schema variants are in the wild; each list in VARIANTS creates, in this order,
``addressbook``, ``group_list`` and ``address_in_groups`` for MariaDB 10.11.
The PHP edit also reads ``month_lookup`` (see MONTH_LOOKUP).

Sources (public repository chatelao/php-addressbook):

* classic: ``addressbook.sql`` at commit a27822bbbf34 ("$Rev: 390 $", 2010), plus
  ``_sql_upgrades/addressbook_upgrade_v80_v82.sql`` (adds ``middlename``).
  There ``deprecated datetime default NULL`` sits in ``PRIMARY KEY (id,deprecated,domain_id)``.
  MySQL <= 5.6 and MariaDB silently make a primary-key column NOT NULL; MySQL 5.x then
  gave it the implicit default '0000-00-00 00:00:00', which is why live rows carry it.
  MariaDB 10.11 keeps the column NOT NULL but with *no* default, so an INSERT that omits
  ``deprecated`` (every PHP insert does) fails in strict mode with error 1364. Below the
  column is therefore spelled ``NOT NULL DEFAULT '0000-00-00 00:00:00'``: what a classic
  install holds. CLASSIC_VERBATIM keeps the project's own text for completeness.
* interim: ``deprecated datetime NOT NULL DEFAULT '1000-01-01 00:00:00'``, described in the
  project's ROADMAP.md / MIGRATION_ROADMAP.md ("Fix `deprecated` column filtering logic").
  The DDL file of that state is not in the stored copies: the DDL here is RECONSTRUCTED
  as classic with that default; _sql_upgrades/fix_deprecated_logic.sql (which drops the
  composite primary keys of all three tables) confirms that the keys were still composite.
* current: ``addressbook.sql`` at commit 0b0e8678e2f9 (after fix_deprecated_logic.sql):
  surrogate keys ``pid`` / ``ag_id``, ``deprecated DEFAULT NULL``, non-unique id indexes.

sql_mode (all tested on MariaDB 10.11.19):
* classic and interim need a session WITHOUT ``NO_ZERO_DATE`` (so not ``TRADITIONAL``): with
  it MariaDB refuses ``DEFAULT '0000-00-00 00:00:00'`` at CREATE (error 1067) and an INSERT
  that falls back on it (error 1978). ``NO_ZERO_IN_DATE`` alone is harmless.
* PHP Address Book's own writes need a NON-STRICT session on every variant: its INSERTs never
  name ``im``, ``im2``, ``im3`` (``text NOT NULL``, no default), so under STRICT_TRANS_TABLES
  (MariaDB >= 10.2.4 default) they fail with error 1364. An edit with history then stamps
  the old row and inserts nothing: the entry loses its live row. The project's CI ran MySQL
  5.5 / MariaDB 10.0-10.1 (non-strict defaults) and the PHP code sets no sql_mode.
  SQL_MODE_CLASSIC (= SQL_MODE_PHP) is that non-strict MySQL 5.6-era mode; SET SESSION it
  before replaying edit_statements(). Under it CLASSIC_VERBATIM works too, and PHP's group
  insert with an explicit NULL ``deprecated`` stores the zero date (warning 1048; strict: error).
* MariaDB keeps MySQL's ODBC quirk: for a NOT NULL DATETIME, ``WHERE deprecated IS NULL``
  matches '0000-00-00 00:00:00' (that is how the PHP code finds classic live rows), but the
  same ``deprecated IS NULL`` as a value (select list, trigger expression) is 0. Use
  ``deprecated IS NULL OR deprecated < '1001-01-01'`` everywhere.

Table prefix: ``$table_prefix`` in config/cfg.db.php (default ""), prepended by
include/dbconnect.php to addressbook, month_lookup, group_list and address_in_groups.
"""

SQL_MODE_CLASSIC = "NO_ENGINE_SUBSTITUTION"
SQL_MODE_PHP = SQL_MODE_CLASSIC

LIVE_DEPRECATED = {"classic": "0000-00-00 00:00:00", "current": None, "interim": "1000-01-01 00:00:00"}

# addressbook columns between id and created, as in the project's DDL.
_PERSON_COLUMNS = """
  firstname varchar(255) NOT NULL,
  middlename varchar(255) {middlename},
  lastname varchar(255) NOT NULL,
  nickname varchar(255) NOT NULL,
  company varchar(255) NOT NULL,
  title varchar(255) NOT NULL,
  address text NOT NULL,
  addr_long text,
  addr_lat text,
  addr_status text,
  home text NOT NULL,
  mobile text NOT NULL,
  work text NOT NULL,
  fax text NOT NULL,
  email text NOT NULL,
  email2 text NOT NULL,
  email3 text NOT NULL,
  im text NOT NULL,
  im2 text NOT NULL,
  im3 text NOT NULL,
  homepage text NOT NULL,
  bday tinyint(2) NOT NULL,
  bmonth varchar(50) NOT NULL,
  byear varchar(4) NOT NULL,
  aday tinyint(2) NOT NULL,
  amonth varchar(50) NOT NULL,
  ayear varchar(4) NOT NULL,
  address2 text NOT NULL,
  phone2 text NOT NULL,
  notes text NOT NULL,
  photo mediumtext,
  x_vcard mediumtext,
  x_activesync mediumtext,"""


def _composite(deprecated):
    """classic / interim: `deprecated` is part of every primary key."""
    return [
        "CREATE TABLE {p}addressbook (\n"
        "  domain_id int(9) unsigned NOT NULL default 0,\n"
        "  id int(9) unsigned NOT NULL," + _PERSON_COLUMNS.format(middlename="default NULL") + "\n"
        "  created datetime default NULL,\n"
        "  modified datetime default NULL,\n"
        "  deprecated " + deprecated + ",\n"
        "  password varchar(256) default NULL,\n"
        "  login date default NULL,\n"
        "  role varchar(256) default NULL,\n"
        "  PRIMARY KEY (id,deprecated,domain_id),\n"
        "  KEY deprecated_domain_id_idx (deprecated,domain_id)\n"
        ") DEFAULT CHARSET=utf8",
        "CREATE TABLE {p}group_list (\n"
        "  `domain_id` int(9) unsigned NOT NULL default 0,\n"
        "  `group_id` int(9) unsigned NOT NULL auto_increment,\n"
        "  `group_parent_id` int(9) default NULL,\n"
        "  `created` datetime default NULL,\n"
        "  `modified` datetime default NULL,\n"
        "  `deprecated` " + deprecated + ",\n"
        "  `group_name` varchar(255) NOT NULL default '',\n"
        "  `group_header` mediumtext NOT NULL,\n"
        "  `group_footer` mediumtext NOT NULL,\n"
        "  PRIMARY KEY (group_id,deprecated,domain_id)\n"
        ") DEFAULT CHARSET=utf8",
        "CREATE TABLE {p}address_in_groups (\n"
        "  `domain_id` int(9) unsigned NOT NULL default 0,\n"
        "  `id` int(9) unsigned NOT NULL default 0,\n"
        "  `group_id` int(9) unsigned NOT NULL default 0,\n"
        "  `created` datetime default NULL,\n"
        "  `modified` datetime default NULL,\n"
        "  `deprecated` " + deprecated + ",\n"
        "  PRIMARY KEY (`group_id`,`id`, deprecated)\n"
        ") DEFAULT CHARSET=utf8",
    ]


_CURRENT = [
    "CREATE TABLE {p}addressbook (\n"
    "  pid int(9) unsigned NOT NULL auto_increment,\n"
    "  domain_id int(9) unsigned NOT NULL default 0,\n"
    "  id int(9) unsigned NOT NULL," + _PERSON_COLUMNS.format(middlename="NOT NULL") + "\n"
    "  created datetime default NULL,\n"
    "  modified datetime default NULL,\n"
    "  deprecated datetime DEFAULT NULL,\n"
    "  password varchar(256) default NULL,\n"
    "  login date default NULL,\n"
    "  role varchar(256) default NULL,\n"
    "  PRIMARY KEY (pid),\n"
    "  KEY id_deprecated_domain_id_idx (id,deprecated,domain_id),\n"
    "  KEY deprecated_domain_id_idx (deprecated,domain_id)\n"
    ") DEFAULT CHARSET=utf8",
    "CREATE TABLE {p}group_list (\n"
    "  `domain_id` int(9) unsigned NOT NULL default 0,\n"
    "  `group_id` int(9) unsigned NOT NULL auto_increment,\n"
    "  `group_parent_id` int(9) default NULL,\n"
    "  `created` datetime default NULL,\n"
    "  `modified` datetime default NULL,\n"
    "  `deprecated` datetime DEFAULT NULL,\n"
    "  `group_name` varchar(255) NOT NULL default '',\n"
    "  `group_header` mediumtext NOT NULL,\n"
    "  `group_footer` mediumtext NOT NULL,\n"
    "  PRIMARY KEY (group_id)\n"
    ") DEFAULT CHARSET=utf8",
    "CREATE TABLE {p}address_in_groups (\n"
    "  `ag_id` int(9) unsigned NOT NULL auto_increment,\n"
    "  `domain_id` int(9) unsigned NOT NULL default 0,\n"
    "  `id` int(9) unsigned NOT NULL default 0,\n"
    "  `group_id` int(9) unsigned NOT NULL default 0,\n"
    "  `created` datetime default NULL,\n"
    "  `modified` datetime default NULL,\n"
    "  `deprecated` datetime DEFAULT NULL,\n"
    "  PRIMARY KEY (`ag_id`),\n"
    "  KEY group_id_id_deprecated_idx (`group_id`,`id`, deprecated)\n"
    ") DEFAULT CHARSET=utf8",
]

_TEMPLATES = {
    "classic": _composite("datetime NOT NULL DEFAULT '0000-00-00 00:00:00'"),
    "interim": _composite("datetime NOT NULL DEFAULT '1000-01-01 00:00:00'"),
    "current": _CURRENT,
}
# The project's classic text as written (needs SQL_MODE_CLASSIC to be usable on MariaDB 10.11).
_CLASSIC_VERBATIM = _composite("datetime default NULL")

# month_lookup, verbatim: saveAddress() re-inserts an edited entry with
# "INSERT ... SELECT ... FROM month_lookup WHERE bmonth_num = 1", so without this table
# (or its row 1) an edit deprecates the old row and inserts nothing.
_MONTH_LOOKUP = [
    "CREATE TABLE {p}month_lookup (\n"
    "  `bmonth` varchar(50) NOT NULL default '',\n"
    "  `bmonth_short` char(3) NOT NULL default '',\n"
    "  `bmonth_num` int(2) unsigned NOT NULL default 0,\n"
    "  PRIMARY KEY (bmonth_num)\n"
    ") DEFAULT CHARSET=utf8",
    "INSERT INTO {p}month_lookup VALUES ('', '', 0), ('January', 'Jan', 1), ('February', 'Feb', 2), "
    "('March', 'Mar', 3), ('April', 'Apr', 4), ('May', 'May', 5), ('June', 'Jun', 6), ('July', 'Jul', 7), "
    "('August', 'Aug', 8), ('September', 'Sep', 9), ('October', 'Oct', 10), ('November', 'Nov', 11), "
    "('December', 'Dec', 12)",
]


def ddl(variant, prefix=""):
    """VARIANTS[variant] with PHP Address Book's $table_prefix applied."""
    return [sql.replace("{p}", prefix) for sql in _TEMPLATES[variant]]


def month_lookup(prefix=""):
    return [sql.replace("{p}", prefix) for sql in _MONTH_LOOKUP]


VARIANTS = {name: ddl(name) for name in ("classic", "current", "interim")}
CLASSIC_VERBATIM = [sql.replace("{p}", "") for sql in _CLASSIC_VERBATIM]
MONTH_LOOKUP = month_lookup()

# Columns saveAddress() writes, in its order (between id and created/modified).
# classic: include/address.class.php of the v8 era (commit 0da4851b46a5) has no middlename;
# current/interim: the 2026 DBAL version ($db_access->execute) adds it after firstname.
FIELDS_V8 = ("firstname", "lastname", "nickname", "company", "title", "address", "home", "mobile",
             "work", "fax", "email", "email2", "email3", "homepage", "aday", "amonth", "ayear",
             "bday", "bmonth", "byear", "address2", "phone2", "photo", "notes")
FIELDS_2026 = FIELDS_V8[:1] + ("middlename",) + FIELDS_V8[1:]
_INTEGER_FIELDS = ("aday", "bday")  # tinyint NOT NULL: '' is an error in strict mode


def fields(variant):
    return FIELDS_V8 if variant == "classic" else FIELDS_2026


def edit_statements(variant, prefix=""):
    """What PHP Address Book runs, in its real order, with $keep_history = true (the shipped
    default: config/cfg.db.php, include/dbconnect.php). Each entry is (sql, param_names); build
    the parameter tuple with params(names, values). Every statement runs on its own in
    autocommit (no transaction) and PHP ignores their errors. Run them under SQL_MODE_PHP.

    Sources: include/address.class.php. classic = the v8 code (commit 0da4851b46a5):
    deleteAddresses() ~lines 22-51, saveAddress() ~53-107, updateAddress() ~109-130.
    current/interim = the 2026 DBAL version ($db_access->execute, prepared "?"):
    deleteAddresses() ~31-60, saveAddress() ~62-128, updateAddress() ~130-158.
    Callers: edit.php ("update" -> updateAddress, "submit" -> saveAddress), delete.php
    (-> deleteAddresses($part_sql), $part_sql = "id = 'N'" or "(id = 'a' OR id = 'b')",
    built in include/dbconnect.php).

    Keys:
      "precheck": updateAddress()/deleteAddresses() first look the entry up through
                  $base_from_where ("<t>.domain_id = N AND <t>.deprecated is null ..."); no row,
                  no write. On the interim schema IS NULL never matches '1000-01-01', so the
                  real app edits and deletes nothing (replaying "edit" there: UPDATE hits 0
                  rows, the INSERT then fails with a duplicate primary key, error 1062).
      "add":      saveAddress() without id: a new entry, id = ifnull(max(id),0)+1 over the
                  whole table (every domain, deprecated rows included), then SELECT max(id).
      "edit":     updateAddress(): 1. UPDATE stamps the live row deprecated = now(), THEN
                  2. INSERT ... SELECT ... FROM month_lookup WHERE bmonth_num = 1 re-inserts the
                  entry with the same id and no deprecated value (the column default = the
                  variant's live marker), 3. SELECT max(id). Between 1 and 2 the entry has no
                  live row; if 2 fails (strict mode, missing month_lookup row) it stays so.
                  address_in_groups is not touched: memberships hang on id and carry over.
                  classic's UPDATE has no domain_id condition; current/interim's has.
                  classic: a second edit or a delete in the same second as an edit fails with
                  duplicate key (id, now(), domain_id) on the UPDATE, error 1062.
      "delete":   deleteAddresses(): 1. UPDATE addressbook, THEN 2. UPDATE address_in_groups,
                  both SET deprecated = now() WHERE deprecated is null AND id = N AND
                  domain_id = D. (History off: DELETE address_in_groups, then DELETE addressbook.)
                  classic: if 1 fails on the same-second duplicate key, 2 still runs, so the
                  entry stays live but loses its group memberships.
    """
    if variant not in _TEMPLATES:
        raise KeyError(variant)
    t, ag, ml = prefix + "addressbook", prefix + "address_in_groups", prefix + "month_lookup"
    cols = fields(variant)
    insert_head = "INSERT INTO %s ( domain_id, id, %s, created, modified)" % (t, ", ".join(cols))
    values = ", ".join("%%s %s" % c for c in cols)
    if variant == "classic":
        stamp = ("UPDATE %s SET deprecated = now() WHERE deprecated is null AND id = %%s" % t, ("id",))
    else:
        stamp = ("UPDATE %s SET deprecated = now() WHERE deprecated is null AND id = %%s AND domain_id = %%s"
                 % t, ("id", "domain_id"))
    names = ("domain_id", "id") + cols
    return {
        "precheck": [("SELECT DISTINCT %s.* FROM %s WHERE %s.domain_id = %%s AND %s.deprecated is null "
                      "AND %s.id = %%s" % (t, t, t, t, t), ("domain_id", "id"))],
        "add": [("%s SELECT %%s domain_id, ifnull(max(id),0)+1 id, %s, now(), now() FROM %s"
                 % (insert_head, values, t), ("domain_id",) + cols),
                ("SELECT max(id) max_id from %s" % t, ())],
        "edit": [stamp,
                 ("%s SELECT %%s domain_id, %%s id, %s, now(), now() FROM %s WHERE bmonth_num = 1"
                  % (insert_head, values, ml), names),
                 ("SELECT max(id) max_id from %s" % t, ())],
        "delete": [("UPDATE %s SET deprecated = now() WHERE deprecated is null AND id = %%s AND domain_id = %%s"
                    % (t,), ("id", "domain_id")),
                   ("UPDATE %s SET deprecated = now() WHERE deprecated is null AND id = %%s AND domain_id = %%s"
                    % (ag,), ("id", "domain_id"))],
    }


def group_member_statement(prefix=""):
    """group.php "add to group": explicit columns, deprecated left to its default (live)."""
    return ("insert into %saddress_in_groups (domain_id, id, group_id, created, modified) "
            "values (%%s, %%s, %%s, now(), now())" % prefix, ("domain_id", "id", "group_id"))


def params(names, values):
    """Parameter tuple for one statement: values is a dict; a missing field is '' as in PHP
    (getIfSetFromAddr), except aday/bday which are 0 (edit.php always posts a number)."""
    out = []
    for name in names:
        if name in values:
            out.append(values[name])
        elif name in _INTEGER_FIELDS:
            out.append(0)
        elif name == "domain_id":
            out.append(0)
        else:
            out.append("")
    return tuple(out)
