-- Freshness of each feed: latest event time and latest ingest time, with rows in the range.
--
-- Question:
--   How recent is the newest data of each feed (clickstream, orders API, engagement
--   metrics, dead letters), and how many rows did each write for @start_date .. @end_date?
-- Parameters:
--   @start_date DATE  first day, inclusive
--   @end_date   DATE  last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
-- Definitions:
--   inputs             user_behavior (raw rows, both sources: freshness is about what the
--                      jobs wrote, duplicates included), engagement_minutely, dead_letter.
--   feed               'stream' and 'api' (user_behavior.source), 'engagement'
--                      (engagement_minutely), 'dead_letter'.
--   latest_event_ts    newest event time over all history: event_ts; window_end for
--                      engagement; dead_letter.event_ts where the job knew it.
--   latest_ingest_ts   newest write time over all history: ingest_ts; emitted_ts for
--                      engagement; insert_ts for dead letters.
--   rows_in_range      rows whose date in @time_zone (of event_ts, window_start, insert_ts)
--                      is in range.
--   rows               one per feed, always four (NULL times and 0 rows for an empty feed).
with behavior_rows as (
    select
        source,
        event_ts,
        ingest_ts
    from `{project}.{dataset}.user_behavior`
),

engagement_rows as (
    select
        window_start,
        window_end,
        emitted_ts
    from `{project}.{dataset}.engagement_minutely`
),

dead_letter_rows as (
    select
        event_ts,
        insert_ts
    from `{project}.{dataset}.dead_letter`
),

feeds as (
    select feed
    from unnest(['stream', 'api', 'engagement', 'dead_letter']) as feed
),

per_feed as (
    select
        source as feed,
        max(event_ts) as latest_event_ts,
        max(ingest_ts) as latest_ingest_ts,
        countif(date(event_ts, @time_zone) between @start_date and @end_date) as rows_in_range
    from behavior_rows
    group by source
    union all
    select
        'engagement' as feed,
        max(window_end) as latest_event_ts,
        max(emitted_ts) as latest_ingest_ts,
        countif(date(window_start, @time_zone) between @start_date and @end_date) as rows_in_range
    from engagement_rows
    union all
    select
        'dead_letter' as feed,
        max(event_ts) as latest_event_ts,
        max(insert_ts) as latest_ingest_ts,
        countif(date(insert_ts, @time_zone) between @start_date and @end_date) as rows_in_range
    from dead_letter_rows
),

final as (
    select
        feeds.feed,
        per_feed.latest_event_ts,
        per_feed.latest_ingest_ts,
        coalesce(per_feed.rows_in_range, 0) as rows_in_range
    from feeds
    left join per_feed
        on per_feed.feed = feeds.feed
)

select *
from final
order by
    case feed
        when 'stream' then 1
        when 'api' then 2
        when 'engagement' then 3
        else 4
    end
