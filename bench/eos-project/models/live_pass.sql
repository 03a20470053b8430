{{ config(materialized='stream', partitions=4, key=['k'], replay='latest') }}

{# The stateless model on the live input, from its end when the job first starts: the latency runs. #}
SELECT seq, k, ts, UPPER(note) AS note
FROM {{ source('eos', 'live') }}
