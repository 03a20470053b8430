{{ config(materialized='table', topic='rp.windowed', partitions=1) }}

{# A tumbling window grouped by a column that is not the key: event time across the repartition topic. #}
SELECT G, WINDOWSTART AS WS, COUNT(*) AS N, SUM(SEQ) AS SEQ_SUM
FROM {{ source('rp', 'events') }}
WINDOW TUMBLING (SIZE 10 SECONDS)
GROUP BY G
EMIT FINAL
