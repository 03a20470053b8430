{{ config(materialized='stream', topic='copart.joined', partitions=4, key=['K']) }}

{# Each event with its key's group: co-partitioned, so task p reads partition p of both topics. #}
SELECT E.SEQ, E.K, G.GRP
FROM {{ source('copart', 'events') }} E
JOIN {{ source('copart', 'groups') }} G
    ON E.K = G.K
