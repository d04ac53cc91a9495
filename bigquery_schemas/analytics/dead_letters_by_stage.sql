-- Dead letters by pipeline, stage and reason.
--
-- Question:
--   Which records did the jobs reject between @start_date and @end_date, at which stage
--   and for what reason? Both: those written in the range, and those whose data is dated
--   in it (a backfill loads old days today: its rejections belong to those days too).
-- Parameters:
--   @start_date DATE  first day, inclusive (date in @time_zone, of insert_ts or of the data)
--   @end_date   DATE  last day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
-- Definitions:
--   input          dead_letter (every job's rejected records, with stage and error).
--   dead_letters   rows of the group written in the range: the date in @time_zone of
--                  insert_ts, when the pipeline met them.
--   data_dead_letters  rows of the group whose data is dated in the range: the date in
--                  @time_zone of the record's own time, the first known of dead_letter.
--                  event_ts, the payload's "event_ts", "order_ts" or "updated_at" (an
--                  order's), the lake partition (dt=YYYY-MM-DD/hour=HH) named in the
--                  attributes' file, else insert_ts. These are the dead letters of the
--                  runs that loaded the range (a backfill of last year's hours rejects
--                  last year's orders today). Reading them scans all of dead_letter: its
--                  partitions are by insert_ts, which says nothing of the data's date.
--   reason         the error text with its values masked as …, cut at 120 characters:
--                  quoted values ('abc' -> '…', "x" -> "…") and every word holding a
--                  digit (numbers, times, dates, ids such as o9), so
--                  "event_ts 2026-11-20T10:00:00.000Z is before 2020-01-01" reads
--                  "event_ts … is before …" and groups with every other time, and
--                  "... got 'x1'" with "... got 'abc'".
--   example_error  one full error text of the group's rows counted above;
--                  first_insert_ts, last_insert_ts  their earliest / latest insert_ts.
--   rows           groups with at least one row counted in either column.
--   order          dead_letters descending, data_dead_letters descending, then pipeline,
--                  stage, reason.
with dead_letters as (
    select
        pipeline,
        stage,
        error,
        insert_ts,
        coalesce(
            event_ts,
            safe.timestamp(regexp_extract(payload, r'"event_ts"\s*:\s*"([^"]*)"')),
            safe.timestamp(regexp_extract(payload, r'"order_ts"\s*:\s*"([^"]*)"')),
            safe.timestamp(regexp_extract(payload, r'"updated_at"\s*:\s*"([^"]*)"')),
            safe.timestamp(
                regexp_replace(
                    regexp_extract(attributes, r'dt=([0-9]{4}-[0-9]{2}-[0-9]{2}/hour=[0-9]{2})'),
                    r'/hour=([0-9]{2})',
                    ' \\1:00:00+00'
                )
            ),
            insert_ts
        ) as data_ts
    from `{project}.{dataset}.dead_letter`
),

dated as (
    select
        pipeline,
        stage,
        error,
        insert_ts,
        date(insert_ts, @time_zone) between @start_date and @end_date as written_in_range,
        date(data_ts, @time_zone) between @start_date and @end_date as data_in_range
    from dead_letters
),

normalised as (
    select
        pipeline,
        stage,
        error,
        insert_ts,
        written_in_range,
        data_in_range,
        substr(
            regexp_replace(
                regexp_replace(regexp_replace(error, r"'[^']*'", "'…'"), r'"[^"]*"', '"…"'),
                r'[\w.:+-]*[0-9][\w.:+-]*',
                '…'
            ),
            1,
            120
        ) as reason
    from dated
    where written_in_range or data_in_range
),

final as (
    select
        pipeline,
        stage,
        reason,
        countif(written_in_range) as dead_letters,
        countif(data_in_range) as data_dead_letters,
        min(error) as example_error,
        min(insert_ts) as first_insert_ts,
        max(insert_ts) as last_insert_ts
    from normalised
    group by pipeline, stage, reason
)

select *
from final
order by dead_letters desc, data_dead_letters desc, pipeline, stage, reason
