#!/usr/bin/env python3
"""Computes what the example project's jobs must produce from its sample data, independently of
streamctl: a plain-Python reading of each model's SQL. Writes one JSON Lines file per model
into the directory given (default tests/e2e/expected).

Semantics reproduced: LEFT JOIN against the latest customer row (all customers are loaded
before any logon); records that do not decode go to the dead-letter topic; tumbling windows
close when (largest event time - allowed lateness) passes their end plus the grace period,
and windows still open at the end are not emitted; running aggregates end with one row per
group.
"""
import json
import os
import sys
from datetime import datetime, timezone

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "example-project", "data")
FMT = "%Y-%m-%d %H:%M:%S"


def ms(text):
    return int(datetime.strptime(text, FMT).replace(tzinfo=timezone.utc).timestamp() * 1000)


def fmt(millis):
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).strftime(FMT)


def load(name, types):
    rows = []
    for line in open(os.path.join(ROOT, name)):
        if not line.strip():
            continue
        v = json.loads(line)
        if all(isinstance(v.get(k), t) or v.get(k) is None for k, t in types.items()):
            rows.append(v)
    return rows


def main(out):
    os.makedirs(out, exist_ok=True)
    customers = {c["CUSTOMER_ID"]: c for c in load("customers.jsonl", {"CUSTOMER_ID": int})}
    logons = load("logon.jsonl", {"LOGON_ID": int, "CUSTOMER_ID": int, "LOGON_DATE": str})
    orders = load("orders.jsonl", {"ORDER_ID": int, "ORDER_STATUS": int})
    outputs = {}

    enriched = []
    for l in logons:
        c = customers.get(l["CUSTOMER_ID"])
        full = None if c is None else c["CUST_FIRST_NAME"] + " " + c["CUST_LAST_NAME"]
        if c is None:
            full = " "  # CONCAT treats NULL as an empty string
        yrs = None if c is None else float(ms(l["LOGON_DATE"]) - ms(c["CUSTOMER_SINCE"])) / 1000 / 60 / 60 / 24 / 365
        enriched.append({
            "logon_id": l["LOGON_ID"], "logon_date": l["LOGON_DATE"], "customer_id": l["CUSTOMER_ID"],
            "cust_full_name": full, "cust_email": c and c["CUST_EMAIL"], "customer_class": c and c["CUSTOMER_CLASS"],
            "customer_since_yrs": yrs,
        })
    outputs["logon_enriched"] = enriched
    outputs["logon_prime_loyal"] = [e for e in enriched if e["customer_class"] == "Prime" and e["customer_since_yrs"] is not None and e["customer_since_yrs"] > 5]

    def windows(events, size, lateness, grace, key, aggregate):
        watermark = max(t for t, _ in events) - lateness
        groups = {}
        for t, e in events:
            start = t - t % size
            groups.setdefault((start, key(e)), []).append(e)
        out = []
        for (start, k), es in sorted(groups.items()):
            if start + size + grace <= watermark:
                out.append(aggregate(start, start + size, k, es))
        return out

    outputs["orders_agg_hourly"] = windows(
        [(ms(o["ORDER_DATE"]), o) for o in orders], 3_600_000, 60_000, 600_000, lambda o: o["ORDER_STATUS"],
        lambda s, e, k, es: {"order_status": k, "order_count": len(es), "max_order_total": max(o["ORDER_TOTAL"] for o in es),
                             "sum_order_total": sum(o["ORDER_TOTAL"] for o in es), "window_start_ts": fmt(s),
                             "windowstart": s, "windowend": e})
    outputs["logon_bursts"] = [
        r for r in windows(
            [(ms(l["LOGON_DATE"]), l) for l in logons], 5_000, 10_000, 0, lambda l: l["CUSTOMER_ID"],
            lambda s, e, k, es: {"customer_id": k, "logon_count": len(es), "min_logon_id": min(l["LOGON_ID"] for l in es),
                                 "max_logon_id": max(l["LOGON_ID"] for l in es), "windowstart": s, "windowend": e})
        if r["logon_count"] > 3
    ]
    modes = {}
    for o in orders:
        modes.setdefault(o["ORDER_MODE"], []).append(o["ORDER_TOTAL"])
    outputs["orders_by_mode"] = [
        {"order_mode": m, "order_count": len(t), "total": sum(t), "avg_total": sum(t) / len(t)} for m, t in sorted(modes.items())
    ]
    for name, rows in outputs.items():
        with open(os.path.join(out, name + ".jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        print(f"{name}: {len(rows)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "expected"))
