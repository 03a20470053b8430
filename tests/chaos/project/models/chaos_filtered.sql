{{ config(materialized='stream', topic='chaos.filtered', partitions=4, key=['K']) }}

{# Stateless: every event whose sequence number is not a multiple of 3. #}
SELECT SEQ, K, TS
FROM {{ source('chaos', 'events') }}
WHERE SEQ % 3 <> 0
