{# Bids per auction in 10-second tumbling windows, with the highest price (q5/q7 style). #}
SELECT auction, COUNT(*) AS bids, MAX(price) AS max_price
FROM {{ source('nexmark', 'bid') }}
WINDOW TUMBLING (SIZE 10 SECONDS)
GROUP BY auction
EMIT FINAL
