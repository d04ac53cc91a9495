-- Headline KPIs for the date range and for the period of equal length just before it.
--
-- Question:
--   What were revenue, orders, average order value, visitors and conversion between
--   @start_date and @end_date, and what were they in the previous period of the same
--   number of days (the days right before @start_date)?
-- Parameters:
--   @start_date DATE  first day, inclusive (date of event_ts in @time_zone)
--   @end_date   DATE  last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
-- Definitions:
--   period           'current' = @start_date .. @end_date; 'previous' = the same number
--                    of days ending the day before @start_date. first_day/last_day say which.
--   sale             an order event whose order is not cancelled (user_behavior_dedup.
--                    cancelled: status 'cancelled' or 'unavailable'; unknown counts as sold).
--   revenue          gross revenue: sum of the price of sales dated in the period (the
--                    sum of orders_revenue_by_date.gross_revenue and avg_spend_per_session.
--                    gross_revenue over the same days).
--   refunds          sum of the price of return events (of orders not cancelled) dated in
--                    the period.
--   net_revenue      revenue - refunds.
--   cancelled_revenue  sum of the price of order events of cancelled orders dated in the
--                    period (not in revenue).
--   orders           distinct order_id among the period's sales.
--   avg_order_value  revenue / orders, NUMERIC 2 decimals (NULL without orders).
--   visitors         distinct user_id with any event in the period (as unique_visitors).
--   sessions         clickstream sessions started in the period, as in
--                    conversion_funnel_daily: a non-NULL session_id with a stream event,
--                    dated by its first event (sessions with no stream event are left out).
--   buying_sessions  those sessions with at least one sale (any date), as
--                    conversion_funnel_daily.buying_sessions.
--   order_conversion buying_sessions / sessions, FLOAT64 4 decimals (NULL without
--                    sessions): conversion_funnel_daily.order_conversion over the period,
--                    not its funnel_conversion (sessions through view, cart and order).
--   rows             two, 'current' then 'previous'.
with dated_events as (
    select
        date(event_ts, @time_zone) as date,
        event_name,
        user_id,
        order_id,
        price,
        cancelled
    from `{project}.{dataset}.user_behavior_dedup`
),

session_events as (
    select
        session_id,
        event_name,
        source,
        cancelled,
        event_ts
    from `{project}.{dataset}.user_behavior_dedup`
    where session_id is not null
),

periods as (
    select
        'current' as period,
        @start_date as first_day,
        @end_date as last_day
    union all
    select
        'previous' as period,
        date_sub(@start_date, interval date_diff(@end_date, @start_date, day) + 1 day) as first_day,
        date_sub(@start_date, interval 1 day) as last_day
),

event_totals as (
    select
        periods.period,
        count(distinct if(dated_events.event_name = 'order' and not dated_events.cancelled, dated_events.order_id, null))
            as orders,
        coalesce(sum(if(dated_events.event_name = 'order' and not dated_events.cancelled, dated_events.price, 0)), 0)
            as revenue,
        coalesce(sum(if(dated_events.event_name = 'return' and not dated_events.cancelled, dated_events.price, 0)), 0)
            as refunds,
        coalesce(sum(if(dated_events.event_name = 'order' and dated_events.cancelled, dated_events.price, 0)), 0)
            as cancelled_revenue,
        count(distinct dated_events.user_id) as visitors
    from periods
    left join dated_events
        on dated_events.date between periods.first_day and periods.last_day
    group by periods.period
),

sessions as (
    select
        session_id,
        date(min(event_ts), @time_zone) as session_date,
        logical_or(event_name = 'order' and not cancelled) as has_order
    from session_events
    group by session_id
    having logical_or(source = 'stream')
),

session_totals as (
    select
        periods.period,
        count(sessions.session_id) as sessions,
        countif(sessions.has_order) as buying_sessions
    from periods
    left join sessions
        on sessions.session_date between periods.first_day and periods.last_day
    group by periods.period
),

final as (
    select
        periods.period,
        periods.first_day,
        periods.last_day,
        event_totals.revenue,
        event_totals.refunds,
        event_totals.revenue - event_totals.refunds as net_revenue,
        event_totals.cancelled_revenue,
        event_totals.orders,
        round(safe_divide(event_totals.revenue, event_totals.orders), 2) as avg_order_value,
        event_totals.visitors,
        session_totals.sessions,
        session_totals.buying_sessions,
        round(safe_divide(session_totals.buying_sessions, session_totals.sessions), 4) as order_conversion
    from periods
    inner join event_totals
        on event_totals.period = periods.period
    inner join session_totals
        on session_totals.period = periods.period
)

select *
from final
order by first_day desc
