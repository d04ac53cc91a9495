-- Top products by units sold.
--
-- Question:
--   Which products sold the most units between @start_date and @end_date?
-- Parameters:
--   @start_date DATE   first day, inclusive (date of event_ts in @time_zone)
--   @end_date   DATE   last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
--   @limit      INT64  number of products returned
-- Definitions:
--   sale           an order event (one per order line) dated in the range whose order
--                  is not cancelled (user_behavior_dedup.cancelled: status 'cancelled'
--                  or 'unavailable'; an order of unknown status counts as sold).
--   units_sold     sum of quantity over sales (one event per order line) dated
--                  in the range; gross: returns are not subtracted (see
--                  top_products_by_returns for those).
--   orders         distinct order_id among those lines.
--   gross_revenue  sum of the order lines' price (user_behavior.price of an order
--                  event is the line amount, unit price x quantity).
--   product_name, category  as carried by the product's latest order event.
--   order          units_sold descending, then product_id (deterministic ties).
with order_lines as (
    select
        product_id,
        product_name,
        category,
        order_id,
        quantity,
        price,
        event_ts
    from `{project}.{dataset}.user_behavior_dedup`
    where event_name = 'order'
        and not cancelled
        and date(event_ts, @time_zone) between @start_date and @end_date
),

final as (
    select
        product_id,
        any_value(product_name having max event_ts) as product_name,
        any_value(category having max event_ts) as category,
        sum(quantity) as units_sold,
        count(distinct order_id) as orders,
        sum(price) as gross_revenue
    from order_lines
    group by product_id
)

select *
from final
order by units_sold desc, product_id
limit @limit
