-- Average spend per session and per user, for sessions started in the date range.
--
-- Question:
--   How much do shoppers spend per session, overall and per user, for the sessions
--   that started between @start_date and @end_date?
-- Parameters:
--   @start_date DATE  first day, inclusive (UTC date of the session's first event)
--   @end_date   DATE  last day, inclusive
-- Definitions:
--   session      a session_id. Its date is the UTC date of its first event (any event
--                type, all history), so a session spanning midnight counts on the day
--                it started, and all its events count, even those after @end_date.
--                Events without a session_id (e.g. API orders with no session) are not
--                part of any session and are left out here.
--   gross_spend  sum of the price of the sessions' order events (line amounts).
--   refunds      sum of the price of return events carrying the same session_id (the
--                return of an order placed in the session), whenever they happened.
--   net_spend    gross_spend - refunds.
--   avg_spend_per_session         net_spend / sessions (sessions without orders count as 0).
--   avg_spend_per_buying_session  net_spend / sessions with at least one order event.
--   avg_spend_per_user            net_spend / distinct users with a session.
--   avg_user_spend_per_session    mean over users of (user's net_spend / user's sessions).
--   Averages are NUMERIC rounded to 2 decimals; one row for the whole range.
with session_events as (
    select
        session_id,
        user_id,
        event_name,
        price,
        event_ts
    from `{project}.{dataset}.user_behavior_dedup`
    where session_id is not null
),

sessions as (
    select
        session_id,
        min(user_id) as user_id,
        date(min(event_ts)) as session_date,
        logical_or(event_name = 'order') as has_order,
        coalesce(sum(if(event_name = 'order', price, 0)), 0) as gross_spend,
        coalesce(sum(if(event_name = 'return', price, 0)), 0) as refunds
    from session_events
    group by session_id
),

sessions_in_range as (
    select
        *,
        gross_spend - refunds as net_spend
    from sessions
    where session_date between @start_date and @end_date
),

per_user as (
    select
        user_id,
        count(*) as sessions,
        sum(net_spend) as net_spend
    from sessions_in_range
    group by user_id
),

totals as (
    select
        count(*) as sessions,
        countif(has_order) as buying_sessions,
        count(distinct user_id) as users,
        coalesce(sum(gross_spend), 0) as gross_spend,
        coalesce(sum(refunds), 0) as refunds,
        coalesce(sum(net_spend), 0) as net_spend
    from sessions_in_range
),

user_means as (
    select avg(net_spend / sessions) as avg_user_spend_per_session
    from per_user
),

final as (
    select
        totals.sessions,
        totals.buying_sessions,
        totals.users,
        totals.gross_spend,
        totals.refunds,
        totals.net_spend,
        round(safe_divide(totals.net_spend, totals.sessions), 2) as avg_spend_per_session,
        round(safe_divide(totals.net_spend, totals.buying_sessions), 2) as avg_spend_per_buying_session,
        round(safe_divide(totals.net_spend, totals.users), 2) as avg_spend_per_user,
        round(user_means.avg_user_spend_per_session, 2) as avg_user_spend_per_session
    from totals
    cross join user_means
)

select * from final
