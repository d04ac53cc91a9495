-- Table user_profile: one behaviour profile per user, rebuilt from all history.
--
-- Question:
--   For each user: how many sessions, views, orders, how much spend, and when last seen?
--   Rebuilt in full by `python -m bigquery_schemas.analytics refresh-profile` (the
--   Composer DAG calls it after each hourly load); readers query the table.
-- Parameters:
--   none (all history; {project} and {dataset} are substituted names).
-- Definitions:
--   sessions        distinct non-NULL session_id of the user.
--   events, views, wishlists, add_to_carts  deduplicated events of the user by type.
--   cancelled       order and return events of cancelled orders (user_behavior_dedup.
--                   cancelled: status 'cancelled' or 'unavailable') are no purchase:
--                   left out of orders, units and spend (still in events).
--   orders          distinct order_id among the user's order events.
--   units_bought, units_returned  summed quantity of order / return events.
--   gross_spend     sum of the price of order events (line amounts).
--   refunds         sum of the price of return events (whenever they happened).
--   net_spend       gross_spend - refunds.
--   first_seen, last_seen  earliest / latest event_ts of any event type.
--   user_name       as carried by the user's latest event.
--   refreshed_at    when this refresh ran.
--   CREATE OR REPLACE swaps the table atomically: readers see the old or the new
--   profile, never a partial one, and a re-run gives the same rows.
create or replace table `{project}.{dataset}.user_profile`
cluster by user_id
options (
    description = 'One row per user: sessions, events by type, orders, spend net of returns, first/last seen. Rebuilt by bigquery_schemas.analytics refresh-profile.'
)
as
with user_events as (
    select
        user_id,
        user_name,
        session_id,
        event_name,
        order_id,
        quantity,
        price,
        cancelled,
        event_ts
    from `{project}.{dataset}.user_behavior_dedup`
),

final as (
    select
        user_id,
        any_value(user_name having max event_ts) as user_name,
        count(distinct session_id) as sessions,
        count(*) as events,
        countif(event_name = 'view') as views,
        countif(event_name = 'wishlist') as wishlists,
        countif(event_name = 'add_to_cart') as add_to_carts,
        count(distinct if(event_name = 'order' and not cancelled, order_id, null)) as orders,
        coalesce(sum(if(event_name = 'order' and not cancelled, quantity, 0)), 0) as units_bought,
        coalesce(sum(if(event_name = 'return' and not cancelled, quantity, 0)), 0) as units_returned,
        coalesce(sum(if(event_name = 'order' and not cancelled, price, 0)), 0) as gross_spend,
        coalesce(sum(if(event_name = 'return' and not cancelled, price, 0)), 0) as refunds,
        coalesce(sum(if(event_name = 'order' and not cancelled, price, 0)), 0)
        - coalesce(sum(if(event_name = 'return' and not cancelled, price, 0)), 0) as net_spend,
        min(event_ts) as first_seen,
        max(event_ts) as last_seen,
        current_timestamp() as refreshed_at
    from user_events
    group by user_id
)

select * from final
