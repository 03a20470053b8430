"""The Nexmark queries on Quix Streams, written as its documentation shows: a StreamingDataFrame
per input topic, column expressions, filters, a tumbling window with .agg(...).final(), and
join_asof for enrichment; results go to an output topic with .to_topic().

Usage: quix_nexmark.py QUERY BOOTSTRAP INPUT_EVENTS OUT_TOPIC
  QUERY: q1 | q2 | window | join. Reads from the earliest offset and stops once INPUT_EVENTS
  input messages were processed (a counter step, the harness's only addition), or when no
  input message came for 20 s (BENCH_STALL_S), reporting the stall.
"""
import os, sys, tempfile, threading, time, uuid
from datetime import timedelta

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Max

query, bootstrap, total, out_name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

app = Application(
    broker_address=bootstrap,
    consumer_group=f"bench-quix-{query}-{uuid.uuid4().hex[:8]}",
    auto_offset_reset="earliest",
    state_dir=tempfile.mkdtemp(prefix="quix-state-"),
    loglevel="WARNING",
)
bids = app.topic("nexmark.bid", value_deserializer="json")
out = app.topic(out_name, value_serializer="json")

seen = 0


def count_input(_value):
    """Stops the application once every input message has been processed."""
    global seen
    seen += 1
    if seen == total:
        app.stop()


def watchdog():
    stall = float(os.environ.get("BENCH_STALL_S", "20"))
    last, at = -1, time.monotonic()
    while True:
        time.sleep(1)
        if seen != last:
            last, at = seen, time.monotonic()
        elif seen > 0 and time.monotonic() - at > stall:
            print(f"quix {query}: STALLED at {seen} of {total} input messages (nothing for {stall:.0f} s)", file=sys.stderr)
            app.stop()
            return


threading.Thread(target=watchdog, daemon=True).start()

sdf = app.dataframe(bids)
sdf.update(count_input)

if query == "q1":
    sdf["price_eur"] = sdf["price"] * 0.908
    sdf = sdf[["auction", "bidder", "price_eur", "date_time"]]
elif query == "q2":
    sdf = sdf[sdf["auction"] % 123 == 0]
    sdf = sdf[["auction", "price"]]
elif query == "window":
    # Bids are keyed by auction id, and windows group by the message key; the message timestamp
    # is the bid's date_time. 1 s of grace, as streamctl's allowed lateness; windows close on the
    # partition's event time, as streamctl's do (the default, "key", waits for a later bid of
    # the same auction).
    sdf = (
        sdf.tumbling_window(timedelta(seconds=10), grace_ms=timedelta(seconds=1))
        .agg(bids=Count(), max_price=Max("price"))
        .final(closing_strategy="partition")
    )
elif query == "join":
    auctions = app.dataframe(app.topic("nexmark.auction", value_deserializer="json"))
    auctions.update(count_input)
    # Both topics are keyed by auction id. join_asof: each bid with the auction record of the
    # same key whose timestamp is not later than the bid's.
    sdf = sdf.join_asof(auctions, how="inner", on_merge="keep-left")
    sdf = sdf[["auction", "bidder", "price", "item_name", "category"]]
else:
    raise SystemExit(f"unknown query {query}")

sdf.to_topic(out)
app.run()
print(f"quix {query}: {seen} input messages processed", file=sys.stderr)
