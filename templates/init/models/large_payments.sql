{{ "{{" }} config(materialized='stream') {{ "}}" }}

{{ "{#" }} Payments above a threshold, with the account owner. {{ "#}" }}
SELECT p.payment_id, p.account_id, a.owner, a.tier, p.amount
FROM {{ "{{" }} source('shop', 'payments') {{ "}}" }} p
LEFT JOIN {{ "{{" }} source('shop', 'accounts') {{ "}}" }} a ON p.account_id = a.account_id
WHERE p.amount >= {{ "{{" }} var('min_amount') {{ "}}" }}
