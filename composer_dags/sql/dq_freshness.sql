-- Data quality: the window's data reaches close to its end. A newest event more than
-- max_lag_minutes before window_end means an extract stopped early (or the hour is empty).
with window_rows as (
    select event_ts
    from `{{ bq_table_id('user_behavior') }}`
    where event_ts >= @window_start
      and event_ts < @window_end
),

lag as (
    select timestamp_diff(@window_end, max(event_ts), minute) as lag_minutes
    from window_rows
),

final as (
    -- One row (passed, detail): BigQueryCheckOperator fails the task on a false or NULL value,
    -- and its message shows detail.
    select
        coalesce(lag_minutes <= @max_lag_minutes, false) as passed,
        concat(
            'freshness: observed ', coalesce(cast(lag_minutes as string), 'null'),
            ', threshold ', cast(@max_lag_minutes as string)
        ) as detail
    from lag
)

select * from final
