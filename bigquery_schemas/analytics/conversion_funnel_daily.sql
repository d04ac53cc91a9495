-- Conversion funnel per day: sessions reaching view -> add_to_cart -> order.
--
-- Question:
--   Of the sessions started each day between @start_date and @end_date, how many
--   viewed a product, then also added to cart, then also ordered?
-- Parameters:
--   @start_date DATE  first day, inclusive (date of the session's first event in @time_zone)
--   @end_date   DATE  last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
-- Definitions:
--   session    a non-NULL session_id with at least one event from the clickstream
--              (source = 'stream' after dedup). It counts on the local date of its first
--              event (all history), so a session spanning midnight counts once, on the
--              day it started, with all its events, even those after @end_date.
--   sessions_without_clickstream  session_ids whose every event came from the orders
--              API (an order booked while the stream was down or its clickstream was
--              not loaded). They are no funnel session: counting them would show
--              sessions that ordered without a view. Dated like sessions.
--   viewed     sessions with at least one view event.
--   carted     sessions with a view and an add_to_cart event.
--   ordered    sessions with a view, an add_to_cart and an order event that is a sale
--              (its order not cancelled: user_behavior_dedup.cancelled).
--              Steps are cumulative (each count is a subset of the previous one); the
--              order of events inside the session is not checked, because stream and
--              API timestamps of the same session come from different clocks.
--   buying_sessions  sessions with at least one sale, whatever else they did (an
--              order placed without a cart event in the clickstream counts here, not in
--              ordered). Same definition as kpi_summary.buying_sessions: over the same
--              days the sums of sessions and buying_sessions equal kpi_summary's.
--   rates      view_to_cart = carted / viewed, cart_to_order = ordered / carted,
--              funnel_conversion = ordered / sessions (through every step),
--              order_conversion = buying_sessions / sessions (= kpi_summary's
--              order_conversion); FLOAT64, 4 decimals, NULL on division by zero.
--   rows       one per date of the range, days without sessions included with 0.
with session_events as (
    select
        session_id,
        event_name,
        source,
        cancelled,
        event_ts
    from `{project}.{dataset}.user_behavior_dedup`
    where session_id is not null
),

calendar as (
    select day
    from unnest(generate_date_array(@start_date, @end_date)) as day
),

sessions as (
    select
        session_id,
        date(min(event_ts), @time_zone) as session_date,
        logical_or(event_name = 'view') as has_view,
        logical_or(event_name = 'add_to_cart') as has_cart,
        logical_or(event_name = 'order' and not cancelled) as has_order,
        logical_or(source = 'stream') as has_clickstream
    from session_events
    group by session_id
),

daily as (
    select
        session_date,
        countif(has_clickstream) as sessions,
        countif(has_clickstream and has_view) as viewed,
        countif(has_clickstream and has_view and has_cart) as carted,
        countif(has_clickstream and has_view and has_cart and has_order) as ordered,
        countif(has_clickstream and has_order) as buying_sessions,
        countif(not has_clickstream) as sessions_without_clickstream
    from sessions
    where session_date between @start_date and @end_date
    group by session_date
),

final as (
    select
        calendar.day as date,
        coalesce(daily.sessions, 0) as sessions,
        coalesce(daily.viewed, 0) as viewed,
        coalesce(daily.carted, 0) as carted,
        coalesce(daily.ordered, 0) as ordered,
        round(safe_divide(daily.carted, daily.viewed), 4) as view_to_cart,
        round(safe_divide(daily.ordered, daily.carted), 4) as cart_to_order,
        round(safe_divide(daily.ordered, daily.sessions), 4) as funnel_conversion,
        coalesce(daily.buying_sessions, 0) as buying_sessions,
        round(safe_divide(daily.buying_sessions, daily.sessions), 4) as order_conversion,
        coalesce(daily.sessions_without_clickstream, 0) as sessions_without_clickstream
    from calendar
    left join daily
        on daily.session_date = calendar.day
)

select *
from final
order by date
