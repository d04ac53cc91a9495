-- Unique visitors per day and for the whole range, exact and approximate.
--
-- Question:
--   How many distinct users were active each day between @start_date and @end_date,
--   and over the whole range? How close is APPROX_COUNT_DISTINCT to the exact count?
-- Parameters:
--   @start_date DATE  first day, inclusive (date of event_ts in @time_zone)
--   @end_date   DATE  last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
-- Definitions:
--   visitor          a user_id with at least one event of any type that day (or in the
--                    range, for the range row).
--   visitors         exact COUNT(DISTINCT user_id).
--   visitors_approx  APPROX_COUNT_DISTINCT(user_id) (HyperLogLog++: cheap and mergeable,
--                    exact for small counts, ~1% error at scale).
--   rows             scope = 'day': one row per date of the range, days without events
--                    included with 0; then one row scope = 'range' (date NULL) for the
--                    whole range, which is not the sum of the days.
with dated_events as (
    select
        date(event_ts, @time_zone) as date,
        user_id
    from `{project}.{dataset}.user_behavior_dedup`
    where date(event_ts, @time_zone) between @start_date and @end_date
),

calendar as (
    select day
    from unnest(generate_date_array(@start_date, @end_date)) as day
),

daily as (
    select
        date,
        count(distinct user_id) as visitors,
        approx_count_distinct(user_id) as visitors_approx
    from dated_events
    group by date
),

whole_range as (
    select
        count(distinct user_id) as visitors,
        approx_count_distinct(user_id) as visitors_approx
    from dated_events
),

final as (
    select
        'day' as scope,
        calendar.day as date,
        coalesce(daily.visitors, 0) as visitors,
        coalesce(daily.visitors_approx, 0) as visitors_approx
    from calendar
    left join daily
        on daily.date = calendar.day
    union all
    select
        'range' as scope,
        cast(null as date) as date,
        visitors,
        visitors_approx
    from whole_range
)

select *
from final
order by scope, date
