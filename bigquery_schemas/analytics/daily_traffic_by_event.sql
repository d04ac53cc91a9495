-- Daily traffic by event type.
--
-- Question:
--   How many events of each type happened each day between @start_date and @end_date,
--   by how many users and sessions?
-- Parameters:
--   @start_date DATE  first day, inclusive (date of event_ts in @time_zone)
--   @end_date   DATE  last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
-- Definitions:
--   events    deduplicated events of that type that day (an order or return event is
--             one order line). Traffic, not sales: order events of cancelled orders
--             count here too (revenue queries leave them out).
--   users     distinct user_id among them.
--   sessions  distinct non-NULL session_id among them. Here every event counts on its
--             own date: a session spanning midnight appears on both days.
--   rows      one per (date, event_name) with at least one event, in funnel order
--             (view, wishlist, add_to_cart, order, return).
with dated_events as (
    select
        date(event_ts, @time_zone) as date,
        event_name,
        user_id,
        session_id
    from `{project}.{dataset}.user_behavior_dedup`
    where date(event_ts, @time_zone) between @start_date and @end_date
),

final as (
    select
        date,
        event_name,
        count(*) as events,
        count(distinct user_id) as users,
        count(distinct session_id) as sessions
    from dated_events
    group by date, event_name
)

select *
from final
order by
    date,
    case event_name
        when 'view' then 1
        when 'wishlist' then 2
        when 'add_to_cart' then 3
        when 'order' then 4
        when 'return' then 5
        else 6
    end,
    event_name
