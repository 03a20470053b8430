{# Enrichment join: each bid with its auction's item and category (q3 style). #}
SELECT b.auction, b.bidder, b.price, a.item_name, a.category
FROM {{ source('nexmark', 'bid') }} b
JOIN {{ source('nexmark', 'auction') }} a ON b.auction = a.id
