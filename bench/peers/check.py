"""Checks one engine's output for one query against reference.json (see reference.py).

Usage: check.py REFERENCE.json QUERY OUTPUT.jsonl SEMANTICS > result.json
  QUERY      q1 | q2 | window | join
  OUTPUT     one JSON object per line; field names as the engine writes them (a Kafka message
             key, where the engine puts a column there, as "_key")
  SEMANTICS  window: bounded (every window, closed at end of input) or streaming (windows closed
             by the watermark; windows still open at the end may be missing);
             join: lookup (bid x every auction) or asof (bid x auction not later than the bid)
             others: -

The count must equal the reference's (for streaming windows: every closed window present, and
any other window emitted must be a real one); the sampled rows (every row for q2 and windows,
rows of auctions with id % 37 == 0 for q1 and join) must equal the reference's, as multisets.
"""
import json, sys
from collections import Counter
from datetime import datetime, timezone

SAMPLE_MOD = 37


def num(v):
    return int(v) if isinstance(v, str) else v


def first(d, *names):
    for n in names:
        if n in d and d[n] is not None:
            return d[n]
    raise KeyError(f"none of {names} in {sorted(d)}")


def millis(v):
    if isinstance(v, (int, float)):
        return int(v)
    # Flink's TIMESTAMP(3) as JSON: "2024-01-01 00:00:10" (UTC here), or ISO-8601.
    s = v.replace("T", " ").rstrip("Z")
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in s else "%Y-%m-%d %H:%M:%S"
    return int(datetime.strptime(s, fmt).replace(tzinfo=timezone.utc).timestamp() * 1000)


def canon(query, d):
    if query == "q1":
        return (num(d["auction"]), num(d["bidder"]), round(float(d["price_eur"]), 2), num(d["date_time"]))
    if query == "q2":
        return (num(d["auction"]), num(d["price"]))
    if query == "window":
        return (
            num(first(d, "auction", "_key")),
            millis(first(d, "windowstart", "window_start", "start", "window_start_time")),
            num(first(d, "bids", "count")),
            num(first(d, "max_price")),
        )
    if query == "join":
        return (num(d["auction"]), num(d["bidder"]), num(d["price"]), d["item_name"], num(d["category"]))
    raise SystemExit(f"unknown query {query}")


def main(ref_path, query, out_path, semantics):
    ref = json.load(open(ref_path))[query]
    rows, unreadable = Counter(), 0
    n = 0
    with open(out_path) as f:
        for line in f:
            if not line.strip():
                continue
            n += 1
            try:
                rows[canon(query, json.loads(line))] += 1
            except (KeyError, ValueError, TypeError) as e:
                unreadable += 1
                if unreadable == 1:
                    first_error = f"{type(e).__name__}: {e}"
    problems = []
    if unreadable:
        problems.append(f"{unreadable} rows unreadable ({first_error})")
    if query == "window":
        want = Counter({tuple(w): 1 for w in ref["sample"]})
        wrong = sum(c for r, c in rows.items() if r not in want)
        dup = sum(c - 1 for r, c in rows.items() if c > 1 and r in want)
        if semantics == "bounded":
            expected = ref["count"]
            missing = sum(1 for r in want if r not in rows)
        else:
            expected = ref["closed_count"]
            closed_end = json.load(open(ref_path))["max_event_time"] - 1000
            missing = sum(1 for r in want if r[1] + 10_000 <= closed_end and r not in rows)
        if wrong:
            problems.append(f"{wrong} windows with wrong values")
        if dup:
            problems.append(f"{dup} duplicate windows")
        if missing:
            problems.append(f"{missing} windows missing")
        checked = len(rows)
        count_ok = not missing and not wrong and not dup and (n == expected or semantics == "streaming")
        extra = n - expected
        note = f"+{extra} windows closed early (values right)" if semantics == "streaming" and extra > 0 and count_ok else ""
    else:
        expected = ref["asof_count"] if (query == "join" and semantics == "asof") else ref["count"]
        want = Counter({tuple(r[:-1]): r[-1] for r in ref["sample"]})
        if query in ("q1", "join"):
            got = Counter({r: c for r, c in rows.items() if r[0] % SAMPLE_MOD == 0})
        else:
            got = rows
        if query == "join" and semantics == "asof":
            # The as-of count is checked; its sample is a subset of the lookup join's rows.
            bad = sum(c for r, c in got.items() if c > want.get(r, 0))
            if bad:
                problems.append(f"{bad} sampled rows not in the reference")
        elif got != want:
            missing = sum((want - got).values())
            wrong = sum((got - want).values())
            problems.append(f"sample differs: {missing} rows missing, {wrong} rows not in the reference")
        checked = sum(got.values())
        count_ok = n == expected
        note = ""
    if n != expected and not (query == "window" and semantics == "streaming" and count_ok):
        problems.append(f"count {n:,} != reference {expected:,}")
    res = {
        "query": query,
        "semantics": semantics,
        "count": n,
        "expected": expected,
        "sampled_rows": checked,
        "ok": not problems,
        "problems": problems,
        "note": note,
    }
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    main(*sys.argv[1:5])
