{# The tumbling window (as q_window.sql) on the Avro copy of the bids. #}
SELECT auction, COUNT(*) AS bids, MAX(price) AS max_price
FROM {{ source('nexmark', 'bid_avro') }}
WINDOW TUMBLING (SIZE 10 SECONDS)
GROUP BY auction
EMIT FINAL
