"""The reference: what each query must output, computed here in plain Python from the generated
JSON Lines, independently of every engine. Also splits the generator's output into one file per
topic (the values only), the input of the file-based runs.

Usage: reference.py DATA_DIR      (reads DATA_DIR/all.jsonl, writes DATA_DIR/{person,auction,bid}.jsonl
                                    and DATA_DIR/reference.json)

Canonical rows (what check.py compares):
  q1      (auction, bidder, round(price * 0.908, 2), date_time)
  q2      (auction, price)                  for bids with auction % 123 == 0
  window  (auction, window_start_ms, count, max_price) for 10 s tumbling windows on date_time
  join    (auction, bidder, price, item_name, category)  bid x auction on id
Samples: every row for q2 and window; rows with auction % 37 == 0 for q1 and join.
"""
import json, os, sys
from collections import Counter, defaultdict

WINDOW_MS = 10_000
LATENESS_MS = 1_000
SAMPLE_MOD = 37


def sampled(auction):
    return auction % SAMPLE_MOD == 0


def main(data_dir):
    prefixes = {t: '{"topic":"nexmark.%s","value":' % t for t in ("person", "auction", "bid")}
    files = {t: open(os.path.join(data_dir, f"{t}.jsonl"), "w") for t in prefixes}
    counts = Counter()
    bids, auctions = [], {}
    with open(os.path.join(data_dir, "all.jsonl")) as f:
        for line in f:
            for t, p in prefixes.items():
                if line.startswith(p):
                    value = line[len(p):].rstrip("\n")[:-1]
                    files[t].write(value + "\n")
                    counts[t] += 1
                    if t == "bid":
                        v = json.loads(value)
                        bids.append((v["auction"], v["bidder"], v["price"], v["date_time"]))
                    elif t == "auction":
                        v = json.loads(value)
                        auctions[v["id"]] = (v["item_name"], v["category"], v["date_time"])
                    break
            else:
                raise SystemExit(f"unexpected line: {line[:80]}")
    for f in files.values():
        f.close()

    max_t = max(b[3] for b in bids)
    q1 = Counter((a, b, round(p * 0.908, 2), t) for a, b, p, t in bids if sampled(a))
    q2 = Counter((a, p) for a, b, p, t in bids if a % 123 == 0)
    win = defaultdict(lambda: [0, None])
    for a, b, p, t in bids:
        w = win[(a, t - t % WINDOW_MS)]
        w[0] += 1
        w[1] = p if w[1] is None else max(w[1], p)
    windows = sorted((a, s, c, m) for (a, s), (c, m) in win.items())
    # A streaming engine closes a window once its watermark (largest event time - 1 s) passes
    # the window's end; the last windows stay open when the input stops.
    closed = [w for w in windows if w[1] + WINDOW_MS <= max_t - LATENESS_MS]
    join_all = [(a, b, p, auctions[a][0], auctions[a][1], t >= auctions[a][2]) for a, b, p, t in bids if a in auctions]
    ref = {
        "events": {"person": counts["person"], "auction": counts["auction"], "bid": counts["bid"]},
        "max_event_time": max_t,
        "q1": {"count": len(bids), "sample": [list(k) + [n] for k, n in q1.items()]},
        "q2": {"count": sum(q2.values()), "sample": [list(k) + [n] for k, n in q2.items()]},
        "window": {"count": len(windows), "closed_count": len(closed), "sample": [list(w) for w in windows]},
        "join": {
            "count": len(join_all),
            # Bids whose auction's time is not after the bid's: what an as-of (temporal) join finds.
            "asof_count": sum(1 for j in join_all if j[5]),
            "sample": [list(k) + [n] for k, n in Counter(j[:5] for j in join_all if sampled(j[0])).items()],
        },
    }
    with open(os.path.join(data_dir, "reference.json"), "w") as f:
        json.dump(ref, f)
    print(json.dumps({k: (v if k in ("events", "max_event_time") else {kk: vv for kk, vv in v.items() if kk != "sample"}) for k, v in ref.items()}))


if __name__ == "__main__":
    main(sys.argv[1])
