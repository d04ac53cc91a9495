-- Data quality: the hourly job wrote at least one row for the window [window_start, window_end).
-- Rows of the job's own source only (source = api): the streaming job's rows say nothing about this run.
with window_rows as (
    select event_id
    from `{{ bq_table_id('user_behavior') }}`
    where event_ts >= @window_start
      and event_ts < @window_end
      and source = @source
),

final as (
    select
        'row_count' as check_name,
        cast(count(*) as float64) as observed,
        cast(0 as float64) as threshold,
        count(*) > 0 as passed
    from window_rows
)

select * from final
