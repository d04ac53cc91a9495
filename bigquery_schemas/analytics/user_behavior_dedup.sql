-- View user_behavior_dedup: user_behavior with exactly one row per event_id.
--
-- Question:
--   Which rows of user_behavior describe distinct real-world events? Every analytics
--   query reads this view, never the table, so an event is counted once even when
--   Pub/Sub delivered it twice or it arrived through both the stream and the orders API.
-- Parameters:
--   none ({project} and {dataset} are names substituted by the analytics command).
-- Definitions:
--   winner   when several rows share an event_id, the first row in this order wins:
--            1. for order and return events, a row with source = 'api' (the order
--               system is authoritative: price and quantity as finally booked);
--            2. the earliest ingest_ts (the first delivery);
--            3. ties: source ('api' before 'stream'), then rows that carry
--               product_name / user_name / category before rows where they are NULL
--               (enriched before not-yet-enriched), then every remaining column in
--               schema order, so the choice never depends on storage order.
--   order_status  for order and return events, the status of their order in the orders
--            table (its latest version, by updated_at); NULL for other events and for
--            orders the orders table does not know (e.g. seen only on the stream).
--   cancelled     true for order and return events whose order_status is 'cancelled'
--            or 'unavailable' (the order was never fulfilled): such lines are no
--            sale, every query leaves them out of revenue, units, orders and buying
--            sessions and reports them only in columns named cancelled_*. False
--            otherwise, including orders of unknown status (counted as sold).
--   cost     filters on date/event_ts cannot be pushed below the row_number() window
--            (it partitions by event_id), so a query on this view scans the whole
--            table. Materialise it (partitioned by day) once that matters.
create or replace view `{project}.{dataset}.user_behavior_dedup`
options (
    description = 'user_behavior with one row per event_id: the api row wins for order/return events, otherwise the earliest ingest_ts; order_status and cancelled from the orders table. Managed by bigquery_schemas.analytics.'
)
as
with user_behavior_rows as (
    select * from `{project}.{dataset}.user_behavior`
),

order_statuses as (
    select
        order_id,
        status
    from `{project}.{dataset}.orders`
    where true
    qualify row_number() over (partition by order_id order by updated_at desc, status) = 1
),

ranked as (
    select
        *,
        row_number() over (
            partition by event_id
            order by
                if(event_name in ('order', 'return') and source = 'api', 0, 1),
                ingest_ts,
                source,
                product_name is null,
                user_name is null,
                category is null,
                event_ts,
                event_name,
                price,
                product_id,
                product_name,
                user_id,
                user_name,
                order_id,
                session_id,
                quantity,
                category,
                date
        ) as copy_rank
    from user_behavior_rows
),

final as (
    select
        ranked.* except (copy_rank),
        if(ranked.event_name in ('order', 'return'), order_statuses.status, null) as order_status,
        coalesce(
            ranked.event_name in ('order', 'return') and order_statuses.status in ('cancelled', 'unavailable'),
            false
        ) as cancelled
    from ranked
    left join order_statuses
        on order_statuses.order_id = ranked.order_id
    where ranked.copy_rank = 1
)

select * from final
