{{ config(materialized='stream', topic='chaos.joined', partitions=4, key=['K']) }}

{# Stream-table join: every event with its key's group. #}
SELECT E.SEQ, E.K, G.GRP
FROM {{ source('chaos', 'events') }} E
JOIN {{ source('chaos', 'groups') }} G
    ON E.K = G.K
