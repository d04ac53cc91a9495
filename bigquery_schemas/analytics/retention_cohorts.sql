-- Retention of new users by first-seen day, from the user_profile table.
--
-- Question:
--   Of the users first seen on each day between @start_date and @end_date, how many
--   were still active 1, 7 and 30 days later?
-- Parameters:
--   @start_date DATE  first cohort day, inclusive (date of user_profile.first_seen in @time_zone)
--   @end_date   DATE  last cohort day, inclusive
--   @time_zone  STRING business time zone of every date (IANA name, e.g. 'Europe/Berlin'; 'UTC' by default)
-- Definitions:
--   input        user_profile (rebuilt from all history by refresh-profile; run it first).
--   cohort_date  date of the user's first_seen in @time_zone.
--   new_users    users of the cohort.
--   retained_dN  users of the cohort whose last_seen is N or more days after the cohort
--                date ("rolling" retention: active on day N or any later day; the profile
--                keeps only first and last activity, so a user active on day 1 and day 9
--                counts for day 7 too).
--   data_through date in @time_zone of the latest last_seen of any user: the last day the profile
--                knows about.
--   rate_dN      retained_dN / new_users, FLOAT64 4 decimals; NULL while day N of the
--                cohort is after data_through (too early to tell).
--   buyers, repeat_buyers  users of the cohort with at least 1 / at least 2 orders
--                (user_profile.orders: cancelled orders are not counted).
--   rows         one per cohort day with at least one new user, by cohort_date.
with profiles as (
    select
        orders,
        date(first_seen, @time_zone) as first_day,
        date(last_seen, @time_zone) as last_day
    from `{project}.{dataset}.user_profile`
),

horizon as (
    select max(last_day) as data_through
    from profiles
),

cohorts as (
    select
        first_day as cohort_date,
        count(*) as new_users,
        countif(date_diff(last_day, first_day, day) >= 1) as retained_d1,
        countif(date_diff(last_day, first_day, day) >= 7) as retained_d7,
        countif(date_diff(last_day, first_day, day) >= 30) as retained_d30,
        countif(orders >= 1) as buyers,
        countif(orders >= 2) as repeat_buyers
    from profiles
    where first_day between @start_date and @end_date
    group by first_day
),

final as (
    select
        cohorts.cohort_date,
        cohorts.new_users,
        cohorts.retained_d1,
        cohorts.retained_d7,
        cohorts.retained_d30,
        if(
            date_add(cohorts.cohort_date, interval 1 day) <= horizon.data_through,
            round(safe_divide(cohorts.retained_d1, cohorts.new_users), 4),
            null
        ) as rate_d1,
        if(
            date_add(cohorts.cohort_date, interval 7 day) <= horizon.data_through,
            round(safe_divide(cohorts.retained_d7, cohorts.new_users), 4),
            null
        ) as rate_d7,
        if(
            date_add(cohorts.cohort_date, interval 30 day) <= horizon.data_through,
            round(safe_divide(cohorts.retained_d30, cohorts.new_users), 4),
            null
        ) as rate_d30,
        cohorts.buyers,
        cohorts.repeat_buyers,
        horizon.data_through
    from cohorts
    cross join horizon
)

select *
from final
order by cohort_date
