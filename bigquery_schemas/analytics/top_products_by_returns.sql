-- Top products by returns, with their return rate.
--
-- Question:
--   Which products had the most units returned between @start_date and @end_date,
--   and what share of the units sold in the same days does that represent?
-- Parameters:
--   @start_date DATE   first day, inclusive (date of event_ts in @time_zone)
--   @end_date   DATE   last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
--   @limit      INT64  number of products returned
-- Definitions:
--   units_returned  sum of quantity over return events dated in the range. A return
--                   counts on the day it happened, not on the day of its order.
--   units_sold      sum of quantity over order events dated in the range.
--   return_rate     units_returned / units_sold (FLOAT64, 4 decimals). Both sides are
--                   dated by their own event, so a return of an order placed before
--                   @start_date can push the rate above 1; NULL when nothing sold.
--   refunds         sum of the return events' price (line amount returned).
--   cancelled       order and return events of cancelled orders (user_behavior_dedup.
--                   cancelled: status 'cancelled' or 'unavailable') are left out of
--                   both sides; unknown status counts as sold.
--   Only products with at least one return in the range are listed.
--   order           units_returned descending, then return_rate descending, then product_id.
with order_and_return_lines as (
    select
        event_name,
        product_id,
        product_name,
        category,
        quantity,
        price,
        event_ts
    from `{project}.{dataset}.user_behavior_dedup`
    where event_name in ('order', 'return')
        and not cancelled
        and date(event_ts, @time_zone) between @start_date and @end_date
),

sold as (
    select
        product_id,
        sum(quantity) as units_sold
    from order_and_return_lines
    where event_name = 'order'
    group by product_id
),

returned as (
    select
        product_id,
        any_value(product_name having max event_ts) as product_name,
        any_value(category having max event_ts) as category,
        count(*) as return_lines,
        sum(quantity) as units_returned,
        sum(price) as refunds
    from order_and_return_lines
    where event_name = 'return'
    group by product_id
),

final as (
    select
        returned.product_id,
        returned.product_name,
        returned.category,
        returned.return_lines,
        returned.units_returned,
        coalesce(sold.units_sold, 0) as units_sold,
        round(safe_divide(returned.units_returned, sold.units_sold), 4) as return_rate,
        returned.refunds
    from returned
    left join sold
        on sold.product_id = returned.product_id
)

select *
from final
order by units_returned desc, return_rate desc, product_id
limit @limit
