{{ config(materialized='table', topic='chaos.counts', partitions=4, key=['K']) }}

{# Windowed aggregate: events and the sum of their sequence numbers per key and 10-second window,
   emitted once when the window closes. #}
SELECT K, COUNT(*) AS N, SUM(SEQ) AS SEQ_SUM
FROM {{ source('chaos', 'events') }}
WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS)
GROUP BY K
EMIT FINAL
