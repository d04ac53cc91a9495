-- Average spend per customer and per order, with or without clickstream sessions.
--
-- Question:
--   How much did each customer and each order bring between @start_date and @end_date,
--   net of refunds? A shop with order data only has no sessions, so this is its
--   counterpart of avg_spend_per_session.
-- Parameters:
--   @start_date DATE  first day, inclusive (date of event_ts in @time_zone)
--   @end_date   DATE  last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
-- Definitions:
--   dating       every figure is dated by its own events (date of event_ts in @time_zone),
--                as orders_revenue_by_date: gross_revenue, refunds and net_revenue equal
--                its sums over the same days.
--   sale, refund an order / return event whose order is not cancelled
--                (user_behavior_dedup.cancelled; unknown status counts). A credit line of
--                a line-level export is a return event, so it is a refund here.
--   customers    distinct user_id with a sale or a refund dated in the range: a customer
--                whose only money in the range is a refund counts, with a negative spend.
--                Ids are text, compared as written; every guest id is a customer
--                (import_files gives each guest order its own, e.g. 'guest-<order_id>').
--   buying_customers  distinct user_id with at least one sale dated in the range.
--   orders       distinct order_id among the sales dated in the range.
--   avg_spend_per_customer   net_revenue / customers.
--   avg_purchase_per_buyer   gross_revenue / buying_customers.
--   avg_order_value          gross_revenue / orders.
--   avg_net_revenue_per_order  net_revenue / orders.
--   Averages are NUMERIC rounded to 2 decimals (NULL on division by zero); one row.
with money_events as (
    select
        user_id,
        order_id,
        event_name = 'order' as is_sale,
        if(event_name = 'order', price, 0) as sale_amount,
        if(event_name = 'return', price, 0) as refund_amount
    from `{project}.{dataset}.user_behavior_dedup`
    where event_name in ('order', 'return')
        and not cancelled
        and date(event_ts, @time_zone) between @start_date and @end_date
),

totals as (
    select
        coalesce(sum(sale_amount), 0) as gross_revenue,
        coalesce(sum(refund_amount), 0) as refunds,
        count(distinct user_id) as customers,
        count(distinct if(is_sale, user_id, null)) as buying_customers,
        count(distinct if(is_sale, order_id, null)) as orders
    from money_events
),

final as (
    select
        gross_revenue,
        refunds,
        gross_revenue - refunds as net_revenue,
        customers,
        buying_customers,
        orders,
        round(safe_divide(gross_revenue - refunds, customers), 2) as avg_spend_per_customer,
        round(safe_divide(gross_revenue, buying_customers), 2) as avg_purchase_per_buyer,
        round(safe_divide(gross_revenue, orders), 2) as avg_order_value,
        round(safe_divide(gross_revenue - refunds, orders), 2) as avg_net_revenue_per_order
    from totals
)

select * from final
