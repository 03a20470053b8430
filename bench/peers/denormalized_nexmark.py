"""The Nexmark queries on Denormalized, written as its README and examples show:
Context().from_topic(topic, sample_json, bootstrap, timestamp_column) and the DataStream API
(select, filter, window, join), results into a Python sink (its sink_kafka is far too slow to
measure anything else: about 22K rows in 120 s here). The sink writes rows as JSON Lines.

Denormalized reads only messages produced after it started, so the harness starts this first
and produces the data set afterwards. It stops once EXPECTED output rows arrived, or when no
output came for IDLE seconds after the producer finished (the harness touches PRODUCER_DONE).

Usage: denormalized_nexmark.py QUERY BOOTSTRAP OUT.jsonl EXPECTED IDLE PRODUCER_DONE
"""
import json, os, sys, threading, time

from denormalized import Context
from denormalized.datafusion import col, lit
from denormalized.datafusion import functions as f

query, bootstrap, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
expected, idle, producer_done = int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]

BID = {"auction": 1000, "bidder": 1001, "price": 1, "channel": "a", "url": "a", "date_time": 1704067200000, "extra": "a"}
AUCTION = {"id": 1000, "item_name": "a", "description": "a", "initial_bid": 1, "reserve": 1, "date_time": 1704067200000,
           "expires": 1704067200000, "seller": 1000, "category": 10, "extra": "a"}

out = open(out_path, "w")
state = {"rows": 0, "last": time.time()}
lock = threading.Lock()


def finish(reason):
    with lock:
        out.flush()
        print(f"denormalized {query}: {state['rows']} rows ({reason})", file=sys.stderr, flush=True)
        os._exit(0)


def sink(rb):
    rows = rb.to_pylist()
    with lock:
        for r in rows:
            out.write(json.dumps(r, default=str) + "\n")
        state["rows"] += len(rows)
        state["last"] = time.time()
        done = state["rows"] >= expected
    if done:
        finish("expected count reached")


def watchdog():
    while True:
        time.sleep(1)
        if os.path.exists(producer_done) and time.time() - max(state["last"], os.path.getmtime(producer_done)) > idle:
            finish(f"no output for {idle:.0f} s after the producer finished")


threading.Thread(target=watchdog, daemon=True).start()

ctx = Context()
bids = ctx.from_topic("nexmark_bid", json.dumps(BID), bootstrap, "date_time", group_id=f"bench-denorm-{query}")

if query == "q1":
    ds = bids.select([col("auction"), col("bidder"), (col("price") * lit(0.908)).alias("price_eur"), col("date_time")])
elif query == "q2":
    ds = bids.filter(col("auction") % lit(123) == lit(0)).select([col("auction"), col("price")])
elif query == "window":
    ds = bids.window(
        [col("auction")],
        [f.count(col("price")).alias("bids"), f.max(col("price")).alias("max_price")],
        10_000,
        None,
    )
elif query == "join":
    auctions = (
        ctx.from_topic("nexmark_auction", json.dumps(AUCTION), bootstrap, "date_time", group_id="bench-denorm-join-a")
        .select([col("id"), col("item_name"), col("category")])
    )
    ds = bids.join(auctions, "inner", ["auction"], ["id"]).select(
        [col("auction"), col("bidder"), col("price"), col("item_name"), col("category")]
    )
else:
    raise SystemExit(f"unknown query {query}")

ds.sink(sink)
finish("the stream ended")
