-- Orders and revenue by date.
--
-- Question:
--   How many orders, units and how much revenue did each day between @start_date and
--   @end_date bring, before and after returns?
-- Parameters:
--   @start_date DATE  first day, inclusive (date of event_ts in @time_zone)
--   @end_date   DATE  last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
-- Definitions:
--   sale            an order event (one per order line) dated that day whose order is not
--                   cancelled (user_behavior_dedup.cancelled: status 'cancelled' or
--                   'unavailable' in the orders table; unknown status counts as sold).
--   orders          distinct order_id among the day's sales.
--   order_lines     sales that day; units_sold = their summed quantity.
--   gross_revenue   sum of the sales' price (line amount = unit price x quantity). The
--                   same figure as kpi_summary.revenue and avg_spend_per_session.gross_revenue
--                   over the same days: every query dates revenue by the order event.
--   cancelled_orders, cancelled_revenue  distinct orders and summed line amounts of the
--                   day's order events of cancelled orders (not in gross_revenue).
--   refunds         sum of the price of return events that day (of orders not cancelled). Returns are netted on
--                   the day the return happened (like a refund in the books), not on the
--                   order's day, so past days do not change when a return arrives.
--   net_revenue     gross_revenue - refunds (can be negative on a day of returns only).
--   avg_order_value gross_revenue / orders, 2 decimals (NULL without orders).
--   rows            one per date of the range, days without orders included with 0.
with order_and_return_lines as (
    select
        date(event_ts, @time_zone) as date,
        event_name,
        order_id,
        quantity,
        price,
        cancelled
    from `{project}.{dataset}.user_behavior_dedup`
    where event_name in ('order', 'return')
        and date(event_ts, @time_zone) between @start_date and @end_date
),

calendar as (
    select day
    from unnest(generate_date_array(@start_date, @end_date)) as day
),

daily as (
    select
        date,
        count(distinct if(event_name = 'order' and not cancelled, order_id, null)) as orders,
        countif(event_name = 'order' and not cancelled) as order_lines,
        sum(if(event_name = 'order' and not cancelled, quantity, 0)) as units_sold,
        sum(if(event_name = 'order' and not cancelled, price, 0)) as gross_revenue,
        countif(event_name = 'return' and not cancelled) as return_lines,
        sum(if(event_name = 'return' and not cancelled, quantity, 0)) as units_returned,
        sum(if(event_name = 'return' and not cancelled, price, 0)) as refunds,
        count(distinct if(event_name = 'order' and cancelled, order_id, null)) as cancelled_orders,
        sum(if(event_name = 'order' and cancelled, price, 0)) as cancelled_revenue
    from order_and_return_lines
    group by date
),

final as (
    select
        calendar.day as date,
        coalesce(daily.orders, 0) as orders,
        coalesce(daily.order_lines, 0) as order_lines,
        coalesce(daily.units_sold, 0) as units_sold,
        coalesce(daily.gross_revenue, 0) as gross_revenue,
        coalesce(daily.return_lines, 0) as return_lines,
        coalesce(daily.units_returned, 0) as units_returned,
        coalesce(daily.refunds, 0) as refunds,
        coalesce(daily.gross_revenue, 0) - coalesce(daily.refunds, 0) as net_revenue,
        round(safe_divide(daily.gross_revenue, daily.orders), 2) as avg_order_value,
        coalesce(daily.cancelled_orders, 0) as cancelled_orders,
        coalesce(daily.cancelled_revenue, 0) as cancelled_revenue
    from calendar
    left join daily
        on daily.date = calendar.day
)

select *
from final
order by date
