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
    select
        'freshness' as check_name,
        cast(lag_minutes as float64) as observed,
        cast(@max_lag_minutes as float64) as threshold,
        coalesce(lag_minutes <= @max_lag_minutes, false) as passed
    from lag
)

select * from final
