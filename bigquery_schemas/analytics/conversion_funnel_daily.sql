-- Conversion funnel per day: sessions reaching view -> add_to_cart -> order.
--
-- Question:
--   Of the sessions started each day between @start_date and @end_date, how many
--   viewed a product, then also added to cart, then also ordered?
-- Parameters:
--   @start_date DATE  first day, inclusive (UTC date of the session's first event)
--   @end_date   DATE  last day, inclusive
-- Definitions:
--   session    a non-NULL session_id. It counts on the UTC date of its first event
--              (all history), so a session spanning midnight counts once, on the day
--              it started, with all its events, even those after @end_date.
--   viewed     sessions with at least one view event.
--   carted     sessions with a view and an add_to_cart event.
--   ordered    sessions with a view, an add_to_cart and an order event.
--              Steps are cumulative (each count is a subset of the previous one); the
--              order of events inside the session is not checked, because stream and
--              API timestamps of the same session come from different clocks.
--   rates      view_to_cart = carted / viewed, cart_to_order = ordered / carted,
--              session_conversion = ordered / sessions; FLOAT64, 4 decimals, NULL on
--              division by zero.
--   rows       one per date of the range, days without sessions included with 0.
with session_events as (
    select
        session_id,
        event_name,
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
        date(min(event_ts)) as session_date,
        logical_or(event_name = 'view') as has_view,
        logical_or(event_name = 'add_to_cart') as has_cart,
        logical_or(event_name = 'order') as has_order
    from session_events
    group by session_id
),

daily as (
    select
        session_date,
        count(*) as sessions,
        countif(has_view) as viewed,
        countif(has_view and has_cart) as carted,
        countif(has_view and has_cart and has_order) as ordered
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
        round(safe_divide(daily.ordered, daily.sessions), 4) as session_conversion
    from calendar
    left join daily
        on daily.session_date = calendar.day
)

select *
from final
order by date
