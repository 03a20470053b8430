{# Nexmark q2: selection (filter). #}
SELECT auction, price
FROM {{ source('nexmark', 'bid') }}
WHERE auction % 123 = 0
