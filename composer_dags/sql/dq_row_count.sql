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
    -- One row (passed, detail): BigQueryCheckOperator fails the task on a false or NULL value,
    -- and its message shows detail.
    select
        count(*) > 0 as passed,
        concat(
            'row_count: observed ', coalesce(cast(count(*) as string), 'null'),
            ', threshold ', cast(0 as string)
        ) as detail
    from window_rows
)

select * from final
