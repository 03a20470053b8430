{{ config(materialized='table', partitions=4, key=['k']) }}

{# Windowed aggregate: events and the sum of their sequence numbers per key and 10-second window,
   emitted once when the window closes. #}
SELECT k, COUNT(*) AS n, SUM(seq) AS seq_sum
FROM {{ source('eos', 'events') }}
WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS)
GROUP BY k
EMIT FINAL
