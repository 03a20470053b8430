{{ config(materialized='table', topic='tasks.by-group', partitions=1) }}

{# Grouped by a column that is not the input's key: a group's rows are in every partition, so through the repartition topic. #}
SELECT G, COUNT(*) AS N, SUM(SEQ) AS SEQ_SUM
FROM {{ source('tasks', 'events') }}
GROUP BY G
