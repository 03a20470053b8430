{{ config(materialized='table', topic='soe.orders-by-mode', partitions=1, key=['ORDER_MODE']) }}

{# Running totals per order mode since the beginning of the stream, updated with every order. #}
SELECT
    ORDER_MODE,
    COUNT(*) AS ORDER_COUNT,
    SUM(ORDER_TOTAL) AS TOTAL,
    AVG(ORDER_TOTAL) AS AVG_TOTAL
FROM {{ source('soe', 'orders') }}
GROUP BY ORDER_MODE
