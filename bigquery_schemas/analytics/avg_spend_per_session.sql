-- Average spend per session and per user, over the sessions active in the date range.
--
-- Question:
--   How much did shoppers spend per session, overall and per user, between
--   @start_date and @end_date?
-- Parameters:
--   @start_date DATE  first day, inclusive (date of event_ts in @time_zone)
--   @end_date   DATE  last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
-- Definitions:
--   dating       every figure is dated by its own events (date of event_ts in @time_zone), like
--                orders_revenue_by_date, never by the day a session started: a session
--                spanning midnight or a session id reused by a replay puts each order on
--                the day it happened, so a day's revenue is the same in every query.
--   sale         an order event whose order is not cancelled (user_behavior_dedup.
--                cancelled: status 'cancelled' or 'unavailable'; unknown counts as sold).
--   gross_revenue, refunds, net_revenue  sum of the price of all sales / of all return
--                events of orders not cancelled dated in the range, with or without a
--                session: equal to the sums of orders_revenue_by_date over the range and
--                to kpi_summary.revenue / refunds / net_revenue for the same days.
--   net_revenue_without_session  the part of net_revenue on events without session_id
--                (e.g. API orders with no session): in no session average below.
--   sessions     active sessions: distinct non-NULL session_id with at least one event
--                (any type, any source) dated in the range. A session whose rows all came
--                from the orders API is a session here (it spent money); a session active
--                on two days counts once per day when each day is asked apart.
--   buying_sessions  sessions with at least one sale dated in the range.
--   session_net_spend  sales - returns dated in the range that carry a session_id
--                (= net_revenue - net_revenue_without_session).
--   users        distinct user_id with an event in a session, in the range: every user
--                of a session counts, also one who only shares a session someone else
--                ordered in (ids are strings; no user stands for a session).
--   avg_spend_per_session         session_net_spend / sessions.
--   avg_spend_per_buying_session  session_net_spend / buying_sessions.
--   avg_spend_per_user            session_net_spend / users.
--   avg_user_spend_per_session    mean over users of (the user's own session sales -
--                returns, by the event's user_id) / (sessions the user has an event in).
--   Averages are NUMERIC rounded to 2 decimals (NULL on division by zero); one row.
with range_events as (
    select
        session_id,
        user_id,
        event_name,
        price,
        cancelled
    from `{project}.{dataset}.user_behavior_dedup`
    where date(event_ts, @time_zone) between @start_date and @end_date
),

money_events as (
    select
        session_id,
        user_id,
        event_name = 'order' as is_sale,
        if(event_name = 'order', price, -price) as net_amount,
        if(event_name = 'order', price, 0) as sale_amount,
        if(event_name = 'return', price, 0) as refund_amount
    from range_events
    where event_name in ('order', 'return')
        and not cancelled
),

revenue as (
    select
        coalesce(sum(sale_amount), 0) as gross_revenue,
        coalesce(sum(refund_amount), 0) as refunds,
        coalesce(sum(net_amount), 0) as net_revenue,
        coalesce(sum(if(session_id is null, net_amount, 0)), 0) as net_revenue_without_session
    from money_events
),

session_spend as (
    select
        session_id,
        logical_or(is_sale) as has_sale,
        sum(net_amount) as net_spend
    from money_events
    where session_id is not null
    group by session_id
),

active_sessions as (
    select distinct session_id
    from range_events
    where session_id is not null
),

session_users as (
    select distinct
        session_id,
        user_id
    from range_events
    where session_id is not null
),

user_spend as (
    select
        user_id,
        sum(net_amount) as net_spend
    from money_events
    where session_id is not null
    group by user_id
),

per_user as (
    select
        session_users.user_id,
        count(*) as sessions,
        coalesce(any_value(user_spend.net_spend), 0) as net_spend
    from session_users
    left join user_spend
        on user_spend.user_id = session_users.user_id
    group by session_users.user_id
),

session_totals as (
    select
        count(*) as sessions,
        countif(coalesce(session_spend.has_sale, false)) as buying_sessions,
        coalesce(sum(session_spend.net_spend), 0) as session_net_spend
    from active_sessions
    left join session_spend
        on session_spend.session_id = active_sessions.session_id
),

user_totals as (
    select
        count(*) as users,
        avg(net_spend / sessions) as avg_user_spend_per_session
    from per_user
),

final as (
    select
        revenue.gross_revenue,
        revenue.refunds,
        revenue.net_revenue,
        revenue.net_revenue_without_session,
        session_totals.sessions,
        session_totals.buying_sessions,
        user_totals.users,
        session_totals.session_net_spend,
        round(safe_divide(session_totals.session_net_spend, session_totals.sessions), 2) as avg_spend_per_session,
        round(
            safe_divide(session_totals.session_net_spend, session_totals.buying_sessions), 2
        ) as avg_spend_per_buying_session,
        round(safe_divide(session_totals.session_net_spend, user_totals.users), 2) as avg_spend_per_user,
        round(user_totals.avg_user_spend_per_session, 2) as avg_user_spend_per_session
    from revenue
    cross join session_totals
    cross join user_totals
)

select * from final
