"""The Nexmark queries on Apache Flink (PyFlink Table API, SQL), engine only: Flink has no Kafka
connector jar here, so it reads the same JSON Lines files as streamctl-file, through the
filesystem connector with the json format, in streaming mode (a bounded source: at its end the
watermark jumps to the end of time and every window closes). Parallelism 1, the local
mini-cluster in one JVM started by PyFlink. Output: the filesystem connector, json format.

Usage: flink_nexmark.py QUERY DATA_DIR OUT_DIR       QUERY: q1 | q2 | window | join
"""
import os, sys

from pyflink.table import EnvironmentSettings, TableEnvironment

query, data_dir, out_dir = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])

t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
config = t_env.get_config()
config.set("parallelism.default", "1")
config.set("table.local-time-zone", "UTC")

t_env.execute_sql(f"""
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time BIGINT, extra STRING,
  ts AS TO_TIMESTAMP_LTZ(date_time, 3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'file://{data_dir}/bid.jsonl', 'format' = 'json')
""")
t_env.execute_sql(f"""
CREATE TABLE auction (
  id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT,
  date_time BIGINT, expires BIGINT, seller BIGINT, category BIGINT, extra STRING
) WITH ('connector' = 'filesystem', 'path' = 'file://{data_dir}/auction.jsonl', 'format' = 'json')
""")

queries = {
    "q1": ("auction BIGINT, bidder BIGINT, price_eur DOUBLE, date_time BIGINT",
           "SELECT auction, bidder, CAST(price AS DOUBLE) * 0.908, date_time FROM bid"),
    "q2": ("auction BIGINT, price BIGINT",
           "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0"),
    "window": ("auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, max_price BIGINT",
               """SELECT auction, window_start, COUNT(*), MAX(price)
                  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
                  GROUP BY auction, window_start, window_end"""),
    "join": ("auction BIGINT, bidder BIGINT, price BIGINT, item_name STRING, category BIGINT",
             """SELECT b.auction, b.bidder, b.price, a.item_name, a.category
                FROM bid AS b JOIN auction AS a ON b.auction = a.id"""),
}
columns, select = queries[query]
t_env.execute_sql(f"""
CREATE TABLE out_{query} ({columns})
WITH ('connector' = 'filesystem', 'path' = 'file://{out_dir}', 'format' = 'json')
""")
t_env.execute_sql(f"INSERT INTO out_{query} {select}").wait()
