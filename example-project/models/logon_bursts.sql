{{ config(materialized='table', topic='soe.logon-bursts', partitions=2, key=['CUSTOMER_ID']) }}

{# Fraud-style check: customers who log on more than 3 times within one 5-second window. #}
SELECT
    CUSTOMER_ID,
    COUNT(*) AS LOGON_COUNT,
    MIN(LOGON_ID) AS MIN_LOGON_ID,
    MAX(LOGON_ID) AS MAX_LOGON_ID
FROM {{ source('soe', 'logon') }}
WINDOW TUMBLING (SIZE 5 SECONDS)
GROUP BY CUSTOMER_ID
HAVING COUNT(*) > 3
EMIT FINAL
