{{ config(materialized='table', topic='rp.by-group', partitions=1) }}

{# Grouped by a column that is not the input's key: through the repartition topic. #}
SELECT G, COUNT(*) AS N, SUM(SEQ) AS SEQ_SUM
FROM {{ source('rp', 'events') }}
GROUP BY G
