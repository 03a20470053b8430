{{ config(materialized='stream', topic='soe.logon-enriched', partitions=2, key=['CUSTOMER_ID']) }}

{# Every logon event, enriched with the customer's current reference data.
   Logons from customers missing in CUSTOMERS are kept (LEFT JOIN) with NULL customer columns. #}
SELECT
    L.LOGON_ID,
    L.LOGON_DATE,
    L.CUSTOMER_ID,
    CONCAT(C.CUST_FIRST_NAME, ' ', C.CUST_LAST_NAME) AS CUST_FULL_NAME,
    C.CUST_EMAIL,
    C.CUSTOMER_CLASS,
    {{ years_between('L.ROWTIME', "STRINGTOTIMESTAMP(C.CUSTOMER_SINCE, 'yyyy-MM-dd HH:mm:ss')") }} AS CUSTOMER_SINCE_YRS
FROM {{ source('soe', 'logon') }} L
LEFT JOIN {{ source('soe', 'customers') }} C
    ON L.CUSTOMER_ID = C.CUSTOMER_ID
