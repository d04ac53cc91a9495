-- Data quality: no row of the window lacks a key. The table declares these columns REQUIRED,
-- but a load path that bypasses the schema (or the emulator, which does not enforce it) could still write NULLs;
-- order and return events also need their order_id.
with window_rows as (
    select event_id, event_name, event_ts, user_id, product_id, order_id, source
    from `{{ bq_table_id('user_behavior') }}`
    where event_ts >= @window_start
      and event_ts < @window_end
),

null_keys as (
    select *
    from window_rows
    where event_id is null
       or event_name is null
       or user_id is null
       or product_id is null
       or source is null
       or (event_name in ('order', 'return') and order_id is null)
),

final as (
    select
        'null_keys' as check_name,
        cast(count(*) as float64) as observed,
        cast(0 as float64) as threshold,
        count(*) = 0 as passed
    from null_keys
)

select * from final
