-- Dead letters by pipeline, stage and reason.
--
-- Question:
--   Which records did the jobs reject between @start_date and @end_date, at which stage
--   and for what reason?
-- Parameters:
--   @start_date DATE  first day, inclusive (UTC date of dead_letter.insert_ts)
--   @end_date   DATE  last day, inclusive
-- Definitions:
--   input          dead_letter (every job's rejected records, with stage and error).
--   day            a dead letter counts on the UTC date it was written (insert_ts): that
--                  is when the pipeline met it, and event_ts is often unknown for it.
--   reason         the error text with its values masked as …, cut at 120 characters:
--                  quoted values ('abc' -> '…', "x" -> "…") and every word holding a
--                  digit (numbers, times, dates, ids such as o9), so
--                  "event_ts 2026-11-20T10:00:00.000Z is before 2020-01-01" reads
--                  "event_ts … is before …" and groups with every other time, and
--                  "... got 'x1'" with "... got 'abc'".
--   dead_letters   rows of the group; example_error one of its full error texts;
--                  first_insert_ts, last_insert_ts  the group's earliest / latest insert_ts.
--   order          dead_letters descending, then pipeline, stage, reason.
with rejected as (
    select
        pipeline,
        stage,
        error,
        insert_ts
    from `{project}.{dataset}.dead_letter`
    where date(insert_ts) between @start_date and @end_date
),

normalised as (
    select
        pipeline,
        stage,
        error,
        insert_ts,
        substr(
            regexp_replace(
                regexp_replace(regexp_replace(error, r"'[^']*'", "'…'"), r'"[^"]*"', '"…"'),
                r'[\w.:+-]*[0-9][\w.:+-]*',
                '…'
            ),
            1,
            120
        ) as reason
    from rejected
),

final as (
    select
        pipeline,
        stage,
        reason,
        count(*) as dead_letters,
        min(error) as example_error,
        min(insert_ts) as first_insert_ts,
        max(insert_ts) as last_insert_ts
    from normalised
    group by pipeline, stage, reason
)

select *
from final
order by dead_letters desc, pipeline, stage, reason
