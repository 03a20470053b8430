#!/usr/bin/env python3
"""Generate the sample data of the soe_demo project.

Writes customers.jsonl, logon.jsonl and orders.jsonl next to this script: JSON Lines, one object
per line, keys are the Oracle column names in UPPERCASE (as Oracle GoldenGate emits them).

The output is deterministic: a fixed random seed and no dependence on the clock or the locale, so
running the script again rewrites the three files byte-identically. Times are wall-clock strings
('yyyy-MM-dd HH:mm:ss') and are treated as UTC in the checks below.

After writing, the script prints what the project's models should produce from this data.

What the data contains on purpose:
  customers.jsonl  40 customers, ids 75000-75099, about 20% Prime, CUSTOMER_SINCE 1999-2015.
                   Written in CUSTOMER_SINCE order (the source's event time).
  logon.jsonl      Logons on 2017-09-27 17:00-20:00, mostly in LOGON_DATE order, with
                   - a few events 2-6 seconds out of order (within the 10 second lateness),
                   - 4 bursts: one customer logging on 4-6 times within one 5-second window,
                   - 2 near misses: 3 logons in one window, and 4 logons split 2+2 over 2 windows,
                   - logons from customer ids that are not in customers.jsonl,
                   - exactly 2 malformed lines (valid JSON, wrong types) in the middle.
  orders.jsonl     Orders on 2017-09-27 16:00-20:00, mostly in ORDER_DATE order, with a few
                   events up to 40 seconds out of order (within the 1 minute lateness), one of
                   them arriving after the next hour has started.
"""

import json
import os
import random
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone

SEED = 20170927
HERE = os.path.dirname(os.path.abspath(__file__))
FMT = "%Y-%m-%d %H:%M:%S"
DAY = datetime(2017, 9, 27)

rng = random.Random(SEED)


def ts(dt):
    return dt.strftime(FMT)


def epoch_ms(dt):
    return int(dt.replace(tzinfo=timezone.utc).timestamp()) * 1000


def write_lines(name, lines):
    path = os.path.join(HERE, name)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    size = os.path.getsize(path)
    assert size < 64 * 1024, f"{name} is {size} bytes"
    return path


# --------------------------------------------------------------------------------------------
# Customers
# --------------------------------------------------------------------------------------------

# (first, last, class, fixed id or None, fixed CUSTOMER_SINCE date or None)
# Names, ids and dates that appear in the talk are reused. Prime customers have fixed dates so that
# six of them are loyal (customer for more than 5 years on 2017-09-27) and two are not.
CUSTOMER_SPECS = [
    ("karl", "greene", "Occasional", 75003, None),
    ("samuel", "cook", "Prime", 75010, "2013-06-14"),      # Prime, not loyal
    ("paul", "taylor", "Occasional", 75012, None),
    ("earl", "butler", "Occasional", None, "2002-07-19"),
    ("cesar", "mckinney", "Regular", None, "2000-10-07"),
    ("randall", "tucker", "Prime", None, "2010-04-23"),    # Prime, loyal
    ("ramon", "hart", "Occasional", None, "2011-01-24"),
    ("willard", "curtis", "Occasional", None, "2009-05-26"),
    ("isaac", "wong", "Prime", None, "2006-11-29"),        # Prime, loyal
    ("ryan", "turner", "Prime", None, "2010-12-21"),       # Prime, loyal
    ("peter", "campbell", "Prime", None, "2002-12-09"),    # Prime, loyal
    ("andres", "fletcher", "Prime", None, "2003-12-17"),   # Prime, loyal
    ("john", "johnson", "Prime", None, "2011-01-02"),      # Prime, loyal
    ("emory", "webb", "Prime", None, "2014-12-06"),        # Prime, not loyal
    ("brian", "white", "Occasional", None, None),
    ("orville", "gill", "Regular", None, None),
    ("jimmy", "barnes", "Occasional", None, None),
    ("cory", "burke", "Business", None, None),
    ("salvador", "douglas", "Occasional", None, None),
    ("glenn", "hayes", "Regular", None, None),
    ("maria", "lopez", "Occasional", None, None),
    ("helen", "baker", "Business", None, None),
    ("frank", "russell", "Occasional", None, None),
    ("nina", "patel", "Regular", None, None),
    ("oscar", "reid", "Occasional", None, None),
    ("tina", "morgan", "Business", None, None),
    ("victor", "hughes", "Occasional", None, None),
    ("laura", "kelly", "Occasional", None, None),
    ("dennis", "price", "Regular", None, None),
    ("gloria", "ward", "Occasional", None, None),
    ("hector", "ramos", "Business", None, None),
    ("irene", "ford", "Occasional", None, None),
    ("marcus", "bell", "Occasional", None, None),
    ("sandra", "cole", "Regular", None, None),
    ("wesley", "grant", "Occasional", None, None),
    ("alice", "murray", "Business", None, None),
    ("gordon", "shaw", "Occasional", None, None),
    ("edith", "porter", "Occasional", None, None),
    ("lionel", "west", "Business", None, None),
    ("rosa", "jenkins", "Occasional", None, None),
]
DOMAINS = ["virgin.com", "yahoo.com", "msn.com", "oracle.com", "ntlworld.com", "verizon.com",
           "hotmail.com", "gmail.com"]

fixed_ids = {spec[3] for spec in CUSTOMER_SPECS if spec[3] is not None}
free_ids = rng.sample([i for i in range(75000, 75100) if i not in fixed_ids],
                      sum(1 for spec in CUSTOMER_SPECS if spec[3] is None))

customers = []
since_lo = datetime(1999, 1, 1)
since_days = (datetime(2015, 12, 31) - since_lo).days
for first, last, klass, cid, since in CUSTOMER_SPECS:
    if cid is None:
        cid = free_ids.pop(0)
    if since is None:
        since_dt = since_lo + timedelta(days=rng.randint(0, since_days))
    else:
        since_dt = datetime.strptime(since, "%Y-%m-%d")
    customers.append({
        "CUSTOMER_ID": cid,
        "CUST_FIRST_NAME": first,
        "CUST_LAST_NAME": last,
        "CUST_EMAIL": f"{first}.{last}@{rng.choice(DOMAINS)}",
        "CUSTOMER_CLASS": klass,
        "CUSTOMER_SINCE": ts(since_dt),
    })

# Event-time order (CUSTOMER_SINCE), then id.
customers.sort(key=lambda c: (c["CUSTOMER_SINCE"], c["CUSTOMER_ID"]))
assert len({c["CUSTOMER_ID"] for c in customers}) == len(customers)
assert all(1999 <= int(c["CUSTOMER_SINCE"][:4]) <= 2015 for c in customers)

write_lines("customers.jsonl", [json.dumps(c) for c in customers])

by_name = {(c["CUST_FIRST_NAME"], c["CUST_LAST_NAME"]): c["CUSTOMER_ID"] for c in customers}
by_id = {c["CUSTOMER_ID"]: c for c in customers}
known_ids = sorted(by_id)
UNKNOWN_IDS = [4565, 31809, 91808]  # customer ids seen in the talk's LOGON sample

# --------------------------------------------------------------------------------------------
# Logons
# --------------------------------------------------------------------------------------------

LOGON_START = DAY.replace(hour=17)
LOGON_SECONDS = 3 * 3600

# Each event: [event_time, write_key, customer_id, late]. Lines are written in write_key order
# (late events after on-time events with the same write_key).
logons = []

# Background traffic.
for _ in range(257):
    t = LOGON_START + timedelta(seconds=rng.randrange(LOGON_SECONDS))
    logons.append([t, t, rng.choice(known_ids), 0])

# Logons from customers that are not in CUSTOMERS.
for i in range(6):
    t = LOGON_START + timedelta(seconds=rng.randrange(LOGON_SECONDS))
    logons.append([t, t, UNKNOWN_IDS[i % len(UNKNOWN_IDS)], 0])


def at(hms):
    h, m, s = map(int, hms.split(":"))
    return DAY.replace(hour=h, minute=m, second=s)


# Bursts: more than 3 logons by one customer inside one 5-second tumbling window.
BURSTS = [
    (("brian", "white"), "17:21:40", [0, 1, 2, 4]),
    (("randall", "tucker"), "18:05:00", [0, 1, 1, 3, 4]),
    (("jimmy", "barnes"), "18:47:15", [0, 0, 1, 2, 3, 4]),
    (("helen", "baker"), "19:32:25", [1, 2, 3, 3]),
]
for name, start, offsets in BURSTS:
    for off in offsets:
        t = at(start) + timedelta(seconds=off)
        logons.append([t, t, by_name[name], 0])

# Near misses that must not be reported: 3 logons in one window, and 4 logons split 2 + 2.
NEAR_MISSES = [
    (("maria", "lopez"), "17:48:10", [0, 2, 4]),
    (("victor", "hughes"), "19:10:00", [3, 4, 5, 6]),
]
for name, start, offsets in NEAR_MISSES:
    for off in offsets:
        t = at(start) + timedelta(seconds=off)
        logons.append([t, t, by_name[name], 0])

# Out-of-order logons: a logon at time T is written first, then one from T - delay.
for delay in [2, 3, 4, 5, 6]:
    t = LOGON_START + timedelta(seconds=rng.randrange(60, LOGON_SECONDS - 60))
    logons.append([t, t, rng.choice(known_ids), 0])
    logons.append([t - timedelta(seconds=delay), t, rng.choice(known_ids), 1])

logons.sort(key=lambda e: (e[1], e[3], e[0], e[2]))

# Two malformed lines in the middle of the file: valid JSON, but not decodable to the schema.
MALFORMED_AT = [141, 172]  # 1-based line numbers in logon.jsonl
lines = []
records = []  # (line_no, logon_id, customer_id, event_time) of the decodable lines
next_id = 178724
events = iter(logons)
total_lines = len(logons) + len(MALFORMED_AT)
last_time = None
for line_no in range(1, total_lines + 1):
    if line_no == MALFORMED_AT[0]:
        lines.append(json.dumps({"LOGON_ID": "not-a-number", "CUSTOMER_ID": 75010,
                                 "LOGON_DATE": ts(last_time)}))
        continue
    if line_no == MALFORMED_AT[1]:
        lines.append(json.dumps({"LOGON_ID": next_id, "CUSTOMER_ID": {"id": 75012},
                                 "LOGON_DATE": ts(last_time)}))
        next_id += 1
        continue
    t, _, cid, _ = next(events)
    lines.append(json.dumps({"LOGON_ID": next_id, "CUSTOMER_ID": cid, "LOGON_DATE": ts(t)}))
    records.append((line_no, next_id, cid, t))
    next_id += 1
    last_time = t
write_lines("logon.jsonl", lines)

# Checks on the logon data.
max_seen = None
ooo = []
for line_no, lid, cid, t in records:
    if max_seen is not None and t < max_seen:
        ooo.append((line_no, lid, int((max_seen - t).total_seconds())))
    max_seen = t if max_seen is None else max(max_seen, t)
assert ooo and all(late <= 10 for _, _, late in ooo), ooo

buckets = defaultdict(list)
for line_no, lid, cid, t in records:
    buckets[(cid, epoch_ms(t) // 5000 * 5000)].append(lid)
bursts = sorted((ws, cid, ids) for (cid, ws), ids in buckets.items() if len(ids) > 3)
expected_bursts = sorted((epoch_ms(at(start)) // 5000 * 5000, by_name[name], None)
                         for name, start, _ in BURSTS)
assert [(ws, cid) for ws, cid, _ in bursts] == [(ws, cid) for ws, cid, _ in expected_bursts], bursts
assert [len(ids) for _, _, ids in bursts] == [len(o) for _, _, o in BURSTS]

# --------------------------------------------------------------------------------------------
# Orders
# --------------------------------------------------------------------------------------------

ORDER_START = DAY.replace(hour=16)
ORDER_SECONDS = 4 * 3600

orders = []  # [event_time, write_key, late, mode, customer_id, status, cents, sales_rep]


def new_order(t, write_key, late=0):
    mode = "online" if rng.random() < 0.6 else "direct"
    cid = rng.choice(known_ids) if rng.random() < 0.97 else rng.choice(UNKNOWN_IDS)
    status = rng.randint(0, 10)
    cents = rng.randint(10000, 800000)
    rep = rng.randint(145, 160) if mode == "direct" else None
    return [t, write_key, late, mode, cid, status, cents, rep]


for _ in range(288):
    t = ORDER_START + timedelta(seconds=rng.randrange(ORDER_SECONDS))
    orders.append(new_order(t, t))

# Out-of-order orders (within the 1 minute lateness): an order at T + delay is written first, then
# the one from T. The first two arrive after the next hour has started, so they exercise the
# grace period of the hourly windows.
for event, delay in [("17:59:52", 35), ("18:59:58", 8), ("16:42:10", 12), ("17:27:31", 40),
                     ("18:33:05", 20), ("19:18:44", 5)]:
    t = at(event)
    w = t + timedelta(seconds=delay)
    orders.append(new_order(w, w))
    orders.append(new_order(t, w, late=1))

orders.sort(key=lambda o: (o[1], o[2], o[0], o[4]))

order_lines = []
order_records = []
for i, (t, _, _, mode, cid, status, cents, rep) in enumerate(orders):
    oid = 71300 + i
    total = f"{cents // 100}.{cents % 100:02d}"
    order_lines.append(
        "{"
        f'"ORDER_ID": {oid}, "ORDER_DATE": {json.dumps(ts(t))}, '
        f'"ORDER_MODE": {json.dumps(mode)}, "CUSTOMER_ID": {cid}, '
        f'"ORDER_STATUS": {status}, "ORDER_TOTAL": {total}, '
        f'"SALES_REP_ID": {json.dumps(rep)}'
        "}"
    )
    order_records.append((i + 1, oid, t, mode, status, cents))
write_lines("orders.jsonl", order_lines)
for line in order_lines:
    json.loads(line)

max_seen = None
orders_ooo = []
for line_no, oid, t, *_ in order_records:
    if max_seen is not None and t < max_seen:
        orders_ooo.append((line_no, oid, int((max_seen - t).total_seconds())))
    max_seen = t if max_seen is None else max(max_seen, t)
assert orders_ooo and all(late <= 60 for _, _, late in orders_ooo), orders_ooo

# --------------------------------------------------------------------------------------------
# Expected model results (printed, not written)
# --------------------------------------------------------------------------------------------

LOYAL_YEARS = 5
enriched = []
for line_no, lid, cid, t in records:
    c = by_id.get(cid)
    yrs = None
    if c is not None:
        since = datetime.strptime(c["CUSTOMER_SINCE"], FMT)
        yrs = (epoch_ms(t) - epoch_ms(since)) / 1000 / 60 / 60 / 24 / 365
        if c["CUSTOMER_CLASS"] == "Prime":
            assert abs(yrs - LOYAL_YEARS) > 0.5, (c, yrs)
    enriched.append((lid, cid, c, yrs))
prime_loyal = [e for e in enriched
               if e[2] is not None and e[2]["CUSTOMER_CLASS"] == "Prime" and e[3] > LOYAL_YEARS]

hourly = defaultdict(lambda: [0, 0, 0])  # count, max cents, sum cents
by_mode = defaultdict(lambda: [0, 0])
for _, _, t, mode, status, cents in order_records:
    h = hourly[(t.replace(minute=0, second=0), status)]
    h[0] += 1
    h[1] = max(h[1], cents)
    h[2] += cents
    by_mode[mode][0] += 1
    by_mode[mode][1] += cents

out = sys.stdout
out.write(f"customers.jsonl: {len(customers)} rows; classes: ")
out.write(", ".join(f"{k} {sum(1 for c in customers if c['CUSTOMER_CLASS'] == k)}"
                    for k in ["Occasional", "Prime", "Regular", "Business"]) + "\n")
out.write(f"logon.jsonl: {len(lines)} lines, {len(records)} decodable, malformed at lines "
          f"{MALFORMED_AT}; {sum(1 for e in enriched if e[2] is None)} from unknown customers; "
          f"out of order (line, id, seconds late): {ooo}\n")
out.write(f"orders.jsonl: {len(order_lines)} rows; out of order (line, id, seconds late): "
          f"{orders_ooo}\n")
out.write(f"logon_enriched: {len(enriched)} rows\n")
out.write(f"logon_prime_loyal: {len(prime_loyal)} rows from customers "
          f"{sorted({e[1] for e in prime_loyal})}\n")
out.write("logon_bursts:\n")
for ws, cid, ids in bursts:
    start = datetime.fromtimestamp(ws / 1000, timezone.utc).strftime(FMT)
    out.write(f"  customer {cid} window {start} ({ws}): {len(ids)} logons, "
              f"ids {min(ids)}..{max(ids)}\n")
out.write(f"orders_agg_hourly: {len(hourly)} rows (hour x status)\n")
for (hour, status), (n, mx, sm) in sorted(hourly.items()):
    out.write(f"  {ts(hour)} status {status:2d}: count {n:2d} max {mx / 100:.2f} "
              f"sum {sm / 100:.2f}\n")
out.write("orders_by_mode:\n")
for mode, (n, sm) in sorted(by_mode.items()):
    out.write(f"  {mode}: count {n} total {sm / 100:.2f} avg {sm / 100 / n:.4f}\n")
