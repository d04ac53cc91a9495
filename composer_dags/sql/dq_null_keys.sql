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
    -- One row (passed, detail): BigQueryCheckOperator fails the task on a false or NULL value,
    -- and its message shows detail.
    select
        count(*) = 0 as passed,
        concat(
            'null_keys: observed ', coalesce(cast(count(*) as string), 'null'),
            ', threshold ', cast(0 as string)
        ) as detail
    from null_keys
)

select * from final
