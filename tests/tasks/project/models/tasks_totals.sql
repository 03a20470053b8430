{{ config(materialized='table', topic='tasks.totals', partitions=6) }}

{# Grouped by the input's key: every key's rows are in one partition, so a task per partition. #}
SELECT K, COUNT(*) AS N, SUM(SEQ) AS SEQ_SUM
FROM {{ source('tasks', 'events') }}
GROUP BY K
