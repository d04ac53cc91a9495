import apache_beam as beam
import pytest
from apache_beam.metrics import MetricsFilter
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines.transforms import METRICS_NAMESPACE
from beam_pipelines.transforms.enrich import EnrichWithDimensions
from tests.transforms.samples import SAMPLE_ORDER, SAMPLE_PRODUCTS, SAMPLE_USERS, SAMPLE_VIEW, event

UNKNOWN_BOTH = SAMPLE_VIEW | {"event_id": "e-9", "user_id": "7", "product_id": "8"}


def _without_ingest_ts(row):
    assert row["ingest_ts"].endswith("Z")
    return {k: v for k, v in row.items() if k != "ingest_ts"}


def test_enrich_with_dimensions_builds_user_behavior_rows():
    p = test_pipeline.TestPipeline(runner="FnApiRunner")
    products = p | "Products" >> beam.Create(SAMPLE_PRODUCTS)
    users = p | "Users" >> beam.Create(SAMPLE_USERS)
    events = p | "Events" >> beam.Create([event(SAMPLE_VIEW), event(SAMPLE_ORDER), event(UNKNOWN_BOTH)])
    rows = events | "EnrichWithDimensions" >> EnrichWithDimensions(products, users, source="stream")
    assert_that(
        rows | beam.Map(_without_ingest_ts),
        equal_to(
            [
                {
                    "date": "2026-11-21",
                    "event_id": "e-1",
                    "event_name": "view",
                    "price": "19.99",
                    "product_id": "1017",
                    "product_name": "Mug",
                    "user_id": "42",
                    "user_name": "Ada",
                    "order_id": None,
                    "event_ts": "2026-11-21T10:00:05.000000Z",
                    "session_id": "s-1",
                    "quantity": 1,
                    "category": "Kitchen",
                    "source": "stream",
                },
                {
                    "date": "2026-11-21",
                    "event_id": "o-1:1",
                    "event_name": "order",
                    "price": "59.97",  # unit price x quantity
                    "product_id": "1017",
                    "product_name": "Mug",
                    "user_id": "42",
                    "user_name": "Ada",
                    "order_id": "o-1",
                    "event_ts": "2026-11-21T10:00:30.000000Z",
                    "session_id": "s-1",
                    "quantity": 3,
                    "category": "Kitchen",
                    "source": "stream",
                },
                {
                    "date": "2026-11-21",
                    "event_id": "e-9",
                    "event_name": "view",
                    "price": "19.99",
                    "product_id": "8",
                    "product_name": None,
                    "user_id": "7",
                    "user_name": None,
                    "order_id": None,
                    "event_ts": "2026-11-21T10:00:05.000000Z",
                    "session_id": "s-1",
                    "quantity": 1,
                    "category": None,
                    "source": "stream",
                },
            ]
        ),
    )
    result = p.run()
    counters = {
        m.key.metric.name: m.committed
        for m in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    }
    assert counters["unknown_products"] == 1
    assert counters["unknown_users"] == 1
    assert counters["enriched_rows"] == 3


def test_enrich_rejects_unknown_source():
    with pytest.raises(ValueError, match="source"):
        EnrichWithDimensions(None, None, source="kafka")
