"""Section b: VIP lookup against the size of a PHP Address Book, beside the original LIKE '%...' query."""
import queue
import random
import statistics
import threading
import time
from contextlib import closing

import addressbook_ddl  # tests/addressbook_ddl.py
from agi_scripts.config import NumberPlan, load
from agi_scripts.database import Database
from agi_scripts.number_keys import number_key
from databases import install
from report import Phase, summary

TITLE = "VIP lookup vs address-book size"
FIRST = ("Алексей", "Андрей", "Анна", "Валентина", "Виктор", "Галина", "Дмитрий", "Евгений", "Елена", "Иван",
         "Ирина", "Константин", "Людмила", "Михаил", "Наталья", "Николай", "Ольга", "Павел", "Сергей", "Татьяна",
         "Юлия", "Ярослав", "Oleg", "Maria")
LAST = ("Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов", "Новиков",
        "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов",
        "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Никитин", "Захаров")
COMPANY = ("", "", "", "ООО \"Ромашка\"", "ИП Петров", "ПАО Кузбассэнерго", "АО \"Шахта Распадская\"",
           "Новокузнецкий хладокомбинат", "МБОУ СОШ 12", "ГБУЗ ГКБ 1", "Сибирь-Телеком")
MOBILE_CODES = [c for c in range(900, 999) if c != 999]  # 7999... is kept for the misses
AREA_CODES = ("3843", "3843", "3843", "3842", "383", "495", "812", "3846")
JUNK = ("нет", "доб. 123", "112", "—", "см. сайт", "тел/факс")
# How people type a mobile number (code, subscriber number sub = a b c).
MOBILE_FORMS = ("8 ({code}) {a}-{b}-{c}", "+7 {code} {sub}", "+7 ({code}) {a}-{b}-{c}", "8{code}{sub}",
                "+7{code}{sub}", "8-{code}-{a}-{b}-{c}", "8 {code} {a} {b} {c}", "{code}{sub}",
                " +7 {code} {a}-{b}-{c} ", "8({code}){a}{b}{c}")


class NumberFaker:
    """Phone numbers as people type them into PHP Address Book."""

    def __init__(self, rng):
        self.rng = rng

    def mobile(self):
        r = self.rng
        code = r.choice(MOBILE_CODES)
        sub = "%07d" % r.randrange(10 ** 7)
        return MOBILE_FORMS[r.randrange(10)].format(code=code, sub=sub, a=sub[:3], b=sub[3:5], c=sub[5:])


    def landline(self):
        r = self.rng
        area = r.choice(AREA_CODES)
        sub = "%0*d" % (10 - len(area), r.randrange(10 ** (10 - len(area))))
        if len(sub) == 6:
            pretty = "%s-%s-%s" % (sub[:2], sub[2:4], sub[4:])
        else:
            pretty = "%s-%s-%s" % (sub[:3], sub[3:5], sub[5:])
        form = r.randrange(6)
        if area == "3843" and form < 2:
            return pretty if form == 0 else sub  # local: completed with the area code
        if form <= 2:
            return "%s %s" % (area, pretty)
        if form == 3:
            return "8 (%s) %s" % (area, pretty)
        if form == 4:
            return "+7 %s %s" % (area, sub)
        return "8%s%s" % (area, sub)

    def junk(self):
        return self.rng.choice(JUNK)

    def phones(self):
        """home, mobile, work, fax, phone2"""
        r = self.rng.random
        home = self.landline() if r() < 0.45 else (self.mobile() if r() < 0.1 else "")
        mobile = self.mobile() if r() < 0.85 else ""
        x = r()
        work = self.landline() if x < 0.33 else (self.junk() if x < 0.36 else "")
        fax = self.landline() if r() < 0.05 else ""
        phone2 = self.mobile() if r() < 0.08 else ""
        return home, mobile, work, fax, phone2


ROW = ("(0,%d,'%s','','%s','','%s','','','%s','%s','%s','%s','%s','','','','','','',0,'','',0,'','',"
       "'','%s','','2021-03-04 10:00:00','2021-03-04 10:00:00',%s)")
COLUMNS = ("domain_id, id, firstname, middlename, lastname, nickname, company, title, address, home, mobile, "
           "work, fax, email, email2, email3, im, im2, im3, homepage, bday, bmonth, byear, aday, amonth, ayear, "
           "address2, phone2, notes, created, modified, deprecated")


def addressbook_batches(size, rng, batch, samples):
    """Multi-row INSERT statements: 90 % live entries, every 10th row a history row (an older
    version of an existing entry, deprecated set). Collects live mobiles into `samples`."""
    faker = NumberFaker(rng)
    live = 0
    sample_every = max(1, size // 400)
    rows = []
    for index in range(size):
        home, mobile, work, fax, phone2 = faker.phones()
        first, last, company = rng.choice(FIRST), rng.choice(LAST), rng.choice(COMPANY)
        if index % 10 == 9 and live:
            entry = rng.randint(1, live)
            deprecated = "'20%02d-%02d-%02d 12:00:00'" % (rng.randint(15, 25), rng.randint(1, 12),
                                                          rng.randint(1, 28))
        else:
            live += 1
            entry = live
            deprecated = "NULL"
            if index % sample_every == 0 and mobile:
                samples.append(mobile)
        rows.append(ROW % (entry, first, last, company, home, mobile, work, fax, "u%d@example.ru" % entry,
                           phone2, deprecated))
        if len(rows) == batch:
            yield "INSERT INTO addressbook (%s) VALUES %s" % (COLUMNS, ",".join(rows))
            rows = []
    if rows:
        yield "INSERT INTO addressbook (%s) VALUES %s" % (COLUMNS, ",".join(rows))


def fill_addressbook(server, database, size, rng):
    """Create PHP Address Book's current tables and fill them; a generator thread builds the
    statements while this one sends them. Returns (sample raw mobiles, history rows)."""
    samples = []
    with closing(server.connect(database)) as connection, connection.cursor() as cursor:
        cursor.execute("SET SESSION sql_mode = %s", (addressbook_ddl.SQL_MODE_PHP,))
        for sql in addressbook_ddl.VARIANTS["current"] + addressbook_ddl.MONTH_LOOKUP:
            cursor.execute(sql)
        pipe = queue.Queue(maxsize=8)
        failure = []

        def produce():
            try:
                for sql in addressbook_batches(size, rng, 4000, samples):
                    pipe.put(sql)
            except BaseException as error:  # reported by the consumer
                failure.append(error)
            finally:
                pipe.put(None)
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        for sql in iter(pipe.get, None):
            cursor.execute(sql)
        producer.join()
        if failure:
            raise failure[0]
        cursor.execute("SELECT COUNT(*), SUM(deprecated IS NOT NULL) FROM addressbook")
        total, history = cursor.fetchone()
    if total != size:
        raise RuntimeError("filled %d rows, expected %d" % (total, size))
    return samples, int(history)


def measure(report, workspace, quick):
    sizes = [1000, 10000] if quick else [1000, 100000, 1000000]
    rng = random.Random(20240605)
    per_size = {}
    for size in sizes:
        what = "ab%d" % size
        try:
            per_size[size] = measure_size(report, workspace, quick, size, what, rng)
        finally:
            workspace.server.drop(what)
    report.details["b"] = {str(k): v for k, v in per_size.items()}
    small, large = min(per_size), max(per_size)
    span = "%s/%s" % (short(large), short(small))
    for kind, title, target in (("hit", "vip_lookup hit", True), ("miss", "vip_lookup miss", True),
                                ("like_hit", "original LIKE hit", False), ("like_miss", "original LIKE miss", False)):
        ratio = per_size[large][kind]["median"] / per_size[small][kind]["median"]
        report.ratio("b", "  ratio %s %s" % (title, span), ratio, target="<= 2" if target else None,
                     met=(ratio <= 2) if target else None)
    if not quick and large < 1000000:
        report.note("b", "the largest size measured was %s rows" % "{:,}".format(large))


def measure_size(report, workspace, quick, size, what, rng):
    """Fill, index and time lookups on an address book of `size` rows; the figures for details."""
    label = "{:,}".format(size)
    server = workspace.server
    name = server.create(what)
    with Phase(report, "b: fill %s address-book rows (multi-row INSERT, no triggers yet)" % label) as fill:
        raw_samples, history = fill_addressbook(server, name, size, rng)
    config = load(workspace.config(what, server.url(name), "[vip]\nsource = addressbook\n"))
    with Phase(report, "b: install_schema(addressbook=True) + vip sync on %s rows" % label) as sync:
        done = install(config, addressbook=True)
    report.once("b", "fill %s rows (%d history rows)" % (label, history), fill.seconds)
    report.once("b", "install_schema + vip sync, %s rows" % label, sync.seconds, output=done)

    plan = NumberPlan()
    hits = [number_key(raw, plan) for raw in raw_samples]
    hits = [key for key in hits if key]
    misses = ["7999%07d" % rng.randrange(10 ** 7) for _ in range(len(hits))]
    # A long read timeout: the original LIKE query on a million rows can take seconds.
    database = Database(config.database, query_timeout=600)
    vip = config.vip
    size_row = database.run("SELECT data_length + index_length, data_length FROM information_schema.tables "
                             "WHERE table_schema = DATABASE() AND table_name = 'addressbook'", fetch="one")
    keys_count = database.run("SELECT COUNT(*) FROM vipsticky_addressbook_keys", fetch="one")[0]
    found = sum(1 for key in hits if database.vip_lookup(key, vip) is not None)
    false_hits = sum(1 for key in misses if database.vip_lookup(key, vip) is not None)
    if found != len(hits) or false_hits:
        raise RuntimeError("%s rows: %d of %d hit keys found, %d misses found" % (
            label, found, len(hits), false_hits))
    iterations = 600 if quick else 3000
    hit_times, miss_times = [], []
    with Phase(report, "b: %d warm vip_lookup hits + %d misses at %s rows" % (iterations, iterations, label)):
        for index in range(iterations):
            hit, miss = hits[index % len(hits)], misses[index % len(misses)]
            started = time.perf_counter()
            database.vip_lookup(hit, vip)
            middle = time.perf_counter()
            database.vip_lookup(miss, vip)
            hit_times.append(middle - started)
            miss_times.append(time.perf_counter() - middle)
    # The original: LIKE '%<last 10 digits>' over four phone columns, every row.
    connection = database.connect()
    like_sql = "SELECT * FROM addressbook WHERE home LIKE %s OR mobile LIKE %s OR work LIKE %s OR fax LIKE %s"
    like_count = max(5, min(200, 2000000 // size)) if not quick else max(5, min(40, 200000 // size))
    like_hit, like_miss, matched = [], [], []

    def like(key, into):
        pattern = "%" + key[-10:]
        cursor = connection.cursor()
        started = time.perf_counter()
        cursor.execute(like_sql, (pattern,) * 4)
        rows = cursor.fetchall()
        into.append(time.perf_counter() - started)
        cursor.close()
        return len(rows)
    with Phase(report, "b: %d original LIKE queries (hit + miss) at %s rows" % (2 * like_count, label)):
        like(hits[0], [])  # warm the buffer pool as far as it goes
        for index in range(like_count):
            matched.append(like(hits[index % len(hits)], like_hit))
            like(misses[index % len(misses)], like_miss)
    database.close()
    report.row("b", "vip_lookup hit, %s rows" % label, "ms", summary(hit_times))
    report.row("b", "vip_lookup miss, %s rows" % label, "ms", summary(miss_times))
    report.row("b", "original LIKE '%%...' hit, %s rows" % label, "ms", summary(like_hit))
    report.row("b", "original LIKE '%%...' miss, %s rows" % label, "ms", summary(like_miss))
    return dict(hit=summary(hit_times), miss=summary(miss_times), like_hit=summary(like_hit),
                like_miss=summary(like_miss), fill_s=fill.seconds, sync_s=sync.seconds, history_rows=history,
                hit_keys=len(hits), index_keys=int(keys_count), addressbook_mb=round(int(size_row[0]) / 2 ** 20, 1),
                addressbook_data_mb=round(int(size_row[1]) / 2 ** 20, 1),
                like_hit_rows_matched=statistics.median(matched))


def short(size):
    if size >= 1000000 and size % 1000000 == 0:
        return "%dM" % (size // 1000000)
    if size >= 1000 and size % 1000 == 0:
        return "%dk" % (size // 1000)
    return str(size)
