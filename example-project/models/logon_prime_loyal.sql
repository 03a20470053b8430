{{ config(materialized='stream', topic='soe.logon-prime-loyal', partitions=2, key=['CUSTOMER_ID']) }}

{# Logons of long-standing Prime customers. #}
SELECT
    LOGON_ID,
    LOGON_DATE,
    CUSTOMER_ID,
    CUST_FULL_NAME,
    CUST_EMAIL,
    CUSTOMER_CLASS,
    CUSTOMER_SINCE_YRS
FROM {{ ref('logon_enriched') }}
WHERE CUSTOMER_CLASS = '{{ var("prime_class") }}'
  AND CUSTOMER_SINCE_YRS > {{ var('loyal_years') }}
