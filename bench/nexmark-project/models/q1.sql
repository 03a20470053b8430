{# Nexmark q1: currency conversion (projection). #}
SELECT auction, bidder, CAST(price AS DOUBLE) * 0.908 AS price_eur, date_time
FROM {{ source('nexmark', 'bid') }}
