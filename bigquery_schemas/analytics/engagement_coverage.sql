-- Engagement coverage per day: minutes with clickstream events that have engagement rows.
--
-- Question:
--   For each day between @start_date and @end_date, in how many of the minutes that had
--   clickstream events did the streaming job write engagement_minutely rows?
-- Parameters:
--   @start_date DATE  first day, inclusive (date of the minute in @time_zone)
--   @end_date   DATE  last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
-- Definitions:
--   inputs           user_behavior rows with source = 'stream' (what the streaming job
--                    read; API orders never pass through its windows), engagement_minutely.
--   event_minutes    distinct minutes (timestamp_trunc(event_ts, minute)) with at least
--                    one stream event.
--   covered_minutes  those minutes with at least one engagement_minutely row whose
--                    window_start is that minute (any event_name, any pane).
--   coverage         covered_minutes / event_minutes, FLOAT64 4 decimals (NULL without events).
--   engagement_minutes  distinct window_start minutes of engagement rows that day (more
--                    than covered_minutes when windows exist for minutes without events).
--   rows             one per date of the range, days without events included with 0.
--   cost             the filter on the partition column date (UTC) is one day wider on
--                    each side than the local range (no zone is more than 14 hours off), so
--                    BigQuery prunes user_behavior's partitions before the local-date filter.
with stream_events as (
    select event_ts
    from `{project}.{dataset}.user_behavior`
    where source = 'stream'
        and date between date_sub(@start_date, interval 1 day) and date_add(@end_date, interval 1 day)
        and date(event_ts, @time_zone) between @start_date and @end_date
),

engagement_windows as (
    select window_start
    from `{project}.{dataset}.engagement_minutely`
    where date(window_start, @time_zone) between @start_date and @end_date
),

calendar as (
    select day
    from unnest(generate_date_array(@start_date, @end_date)) as day
),

event_minutes as (
    select distinct timestamp_trunc(event_ts, minute) as minute
    from stream_events
),

engagement_minutes as (
    select distinct timestamp_trunc(window_start, minute) as minute
    from engagement_windows
),

daily_events as (
    select
        date(event_minutes.minute, @time_zone) as day,
        count(*) as event_minutes,
        count(engagement_minutes.minute) as covered_minutes
    from event_minutes
    left join engagement_minutes
        on engagement_minutes.minute = event_minutes.minute
    group by day
),

daily_engagement as (
    select
        date(minute, @time_zone) as day,
        count(*) as engagement_minutes
    from engagement_minutes
    group by day
),

final as (
    select
        calendar.day as date,
        coalesce(daily_events.event_minutes, 0) as event_minutes,
        coalesce(daily_events.covered_minutes, 0) as covered_minutes,
        round(safe_divide(daily_events.covered_minutes, daily_events.event_minutes), 4) as coverage,
        coalesce(daily_engagement.engagement_minutes, 0) as engagement_minutes
    from calendar
    left join daily_events
        on daily_events.day = calendar.day
    left join daily_engagement
        on daily_engagement.day = calendar.day
)

select *
from final
order by date
