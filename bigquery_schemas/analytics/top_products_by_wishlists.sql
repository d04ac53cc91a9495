-- Top products by wishlists.
--
-- Question:
--   Which products were added to wishlists most often between @start_date and @end_date?
-- Parameters:
--   @start_date DATE   first day, inclusive (date of event_ts in @time_zone)
--   @end_date   DATE   last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
--   @limit      INT64  number of products returned
-- Definitions:
--   wishlists  number of (deduplicated) wishlist events dated in the range.
--   users      distinct users who wishlisted the product in the range.
--   product_name, category  as carried by the product's latest wishlist event.
--   order      wishlists descending, then users descending, then product_id.
with wishlist_events as (
    select
        product_id,
        product_name,
        category,
        user_id,
        event_ts
    from `{project}.{dataset}.user_behavior_dedup`
    where event_name = 'wishlist'
        and date(event_ts, @time_zone) between @start_date and @end_date
),

final as (
    select
        product_id,
        any_value(product_name having max event_ts) as product_name,
        any_value(category having max event_ts) as category,
        count(*) as wishlists,
        count(distinct user_id) as users
    from wishlist_events
    group by product_id
)

select *
from final
order by wishlists desc, users desc, product_id
limit @limit
