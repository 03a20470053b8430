{{ config(materialized='table', topic='soe.orders-agg-hourly', partitions=1, key=['ORDER_STATUS']) }}

{# Order count, largest order and order value per order status and hour. Orders up to 10 minutes
   late still count; each hour's final result is emitted once, when the hour closes. #}
SELECT
    ORDER_STATUS,
    COUNT(*) AS ORDER_COUNT,
    MAX(ORDER_TOTAL) AS MAX_ORDER_TOTAL,
    SUM(ORDER_TOTAL) AS SUM_ORDER_TOTAL,
    TIMESTAMPTOSTRING(WINDOWSTART, 'yyyy-MM-dd HH:mm:ss') AS WINDOW_START_TS
FROM {{ source('soe', 'orders') }}
WINDOW TUMBLING (SIZE 1 HOUR, GRACE PERIOD 10 MINUTES)
GROUP BY ORDER_STATUS
EMIT FINAL
