{# Nexmark q1 (as q1.sql) on the Avro copy of the bids. #}
SELECT auction, bidder, CAST(price AS DOUBLE) * 0.908 AS price_eur, date_time
FROM {{ source('nexmark', 'bid_avro') }}
