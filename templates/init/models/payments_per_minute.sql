{{ "{{" }} config(materialized='table', key=['account_id']) {{ "}}" }}

SELECT account_id, COUNT(*) AS payments, SUM(amount) AS total
FROM {{ "{{" }} source('shop', 'payments') {{ "}}" }}
WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS)
GROUP BY account_id
EMIT FINAL
