-- Data quality: dead letters of @pipeline for the window stay under @max_ratio of its records.
-- ratio = dead letters / (rows written + dead letters); an empty window has ratio 0.
with written as (
    select count(*) as n
    from `{{ bq_table_id('user_behavior') }}`
    where event_ts >= @window_start
      and event_ts < @window_end
      and source = @source
),

dead_letters as (
    select count(*) as n
    from `{{ bq_table_id('dead_letter') }}`
    where pipeline = @pipeline
      and event_ts >= @window_start
      and event_ts < @window_end
),

ratio as (
    select
        case
            when written.n + dead_letters.n = 0 then 0.0
            else dead_letters.n / (written.n + dead_letters.n)
        end as observed
    from written
    cross join dead_letters
),

final as (
    select
        'dead_letter_ratio' as check_name,
        cast(observed as float64) as observed,
        @max_ratio as threshold,
        observed <= @max_ratio as passed
    from ratio
)

select * from final
