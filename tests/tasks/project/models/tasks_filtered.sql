{{ config(materialized='stream', topic='tasks.filtered', partitions=6, key=['K']) }}

{# Stateless: a task per partition. #}
SELECT SEQ, K
FROM {{ source('tasks', 'events') }}
WHERE SEQ % 3 <> 0
