"""Composite Beam transforms shared by the streaming and the batch jobs.

* :mod:`.parse`: ``ParseEvents`` (Pub/Sub messages) and ``ValidateRecords`` (decoded
  records) with a tagged dead-letter output.
* :mod:`.dedupe`: ``DeduplicateEvents`` (bounded input) and
  ``DeduplicateEventsStateful`` (streaming, state + timer per ``event_id``).
* :mod:`.enrich`: ``EnrichWithDimensions`` (products/users side inputs -> ``user_behavior`` rows).
* :mod:`.bigquery_sink`: ``WriteUserBehavior``, ``WriteDeadLetters``, ``WriteRowsToTable``.
* :mod:`.windows`: ``EngagementMetrics`` (1-minute event-time windows, late panes).
* :mod:`.dimension_side_inputs`: periodically refreshed products/users side inputs for streaming.
* :mod:`.dimension_extract`: the dimensions read from the SQL source by key ranges, merged
  into the lake's snapshots (``extract_dims``).
* :mod:`.dimension_tables`: the dimension tables' keys and columns, and the shrink rule
  every job applies before replacing one.
* :mod:`.job_window`: the hourly job's window ``[start, end)``: ``KeepEventsInWindow``,
  ``ParseEventsInWindow`` (events outside it become dead letters).
* :mod:`.staging`: the hourly job's writes: per-run staging tables loaded by load jobs,
  merged into the final tables by keyed statements, then dropped; the stale-staging sweep.

Every counter lives in the :data:`METRICS_NAMESPACE` namespace, so one metrics query
gives the conservation figures of a run:
``records_in = valid_events + dead_letters_parse + dead_letters_validate`` and
``valid_events = rows written + duplicates_removed (+ bigquery_failed_rows)``.
"""

METRICS_NAMESPACE = "ecommerce"
