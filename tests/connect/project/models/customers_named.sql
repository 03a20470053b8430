{{ config(materialized='table', topic='soe.customers-named', key=['customer_id']) }}

-- Every customer with a display name: inserts, updates and deletes of the table follow.
SELECT customer_id,
       cust_first_name || ' ' || cust_last_name AS full_name,
       customer_class,
       credit_limit
FROM {{ source('soe', 'customers') }}
