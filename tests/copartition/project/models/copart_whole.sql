{{ config(materialized='stream', topic='copart.whole', partitions=4) }}

{# The same join from a stream without a declared key: every task reads the whole table. #}
SELECT E.SEQ, E.K, G.GRP
FROM {{ source('copart', 'events_any') }} E
JOIN {{ source('copart', 'groups') }} G
    ON E.K = G.K
