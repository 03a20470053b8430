{{ config(topic='soe.orders-by-customer') }}

SELECT customer_id, COUNT(*) AS order_count, SUM(order_total) AS order_sum
FROM {{ source('soe', 'orders') }}
GROUP BY customer_id
