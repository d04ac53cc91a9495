-- Category summary: revenue, units and return rate per category.
--
-- Question:
--   For each product category, what were the units sold, revenue and returns between
--   @start_date and @end_date?
-- Parameters:
--   @start_date DATE  first day, inclusive (date of event_ts in @time_zone)
--   @end_date   DATE  last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
-- Definitions:
--   category        user_behavior.category of each order/return event (the product's
--                   category when the event was processed); '(unknown)' when NULL
--                   (product not in the products dimension yet).
--   cancelled       order and return events of cancelled orders (user_behavior_dedup.
--                   cancelled: status 'cancelled' or 'unavailable') are no sale and are
--                   left out of every column; unknown status counts as sold.
--   orders          distinct order_id among the category's order events.
--   units_sold      sum of quantity over order events dated in the range.
--   gross_revenue   sum of the order events' price (line amounts).
--   units_returned, refunds  sum of quantity / price over return events dated in the
--                   range: a return counts on the day it happened (as in
--                   orders_revenue_by_date), whatever the order's date.
--   net_revenue     gross_revenue - refunds.
--   return_rate     units_returned / units_sold, FLOAT64 4 decimals (can exceed 1 when
--                   returns concern orders before @start_date; NULL without sales).
--   order           net_revenue descending, then category.
with order_and_return_lines as (
    select
        coalesce(category, '(unknown)') as category,
        event_name,
        order_id,
        quantity,
        price
    from `{project}.{dataset}.user_behavior_dedup`
    where event_name in ('order', 'return')
        and not cancelled
        and date(event_ts, @time_zone) between @start_date and @end_date
),

per_category as (
    select
        category,
        count(distinct if(event_name = 'order', order_id, null)) as orders,
        sum(if(event_name = 'order', quantity, 0)) as units_sold,
        sum(if(event_name = 'order', price, 0)) as gross_revenue,
        sum(if(event_name = 'return', quantity, 0)) as units_returned,
        sum(if(event_name = 'return', price, 0)) as refunds
    from order_and_return_lines
    group by category
),

final as (
    select
        category,
        orders,
        units_sold,
        gross_revenue,
        units_returned,
        refunds,
        gross_revenue - refunds as net_revenue,
        round(safe_divide(units_returned, units_sold), 4) as return_rate
    from per_category
)

select *
from final
order by net_revenue desc, category
