{{ config(materialized='stream', partitions=4, key=['k']) }}

{# Stateless: every event, its note upper-cased. #}
SELECT seq, k, ts, UPPER(note) AS note
FROM {{ source('eos', 'events') }}
