-- Data quality: the run's dead letters stay under the max_ratio parameter of its records.
-- ratio = dead letters / (rows of the window + dead letters); an empty window has ratio 0.
-- The job stamps its dead letters with job_name = the job_run_id parameter (the Airflow run id), which also
-- catches records rejected before they had an event time; retries of the job add to the same id,
-- so the check errs on the strict side.
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
      and job_name = @job_run_id
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
    -- One row (passed, detail): BigQueryCheckOperator fails the task on a false or NULL value,
    -- and its message shows detail.
    select
        observed <= @max_ratio as passed,
        concat(
            'dead_letter_ratio: observed ', coalesce(cast(observed as string), 'null'),
            ', threshold ', cast(@max_ratio as string)
        ) as detail
    from ratio
)

select * from final
