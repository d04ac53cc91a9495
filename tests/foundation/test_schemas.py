"""The schema files are the single source for table creation and Beam writes."""

import json
import shutil

import pytest
from google.cloud import bigquery

import bigquery_schemas
from bigquery_schemas import beam_additional_bq_parameters, beam_schema, load_fields, table_names, table_spec
from bigquery_schemas.ddl import IncompatibleSchemaChange, ensure_all, ensure_table

SEED_COLUMNS = [
    "date",
    "event_id",
    "event_name",
    "price",
    "product_id",
    "product_name",
    "user_id",
    "user_name",
    "order_id",
]
EXTRA_COLUMNS = ["event_ts", "session_id", "quantity", "category", "source", "ingest_ts"]


def test_user_behavior_columns_seed_first_then_extras():
    assert table_spec("user_behavior").column_names == SEED_COLUMNS + EXTRA_COLUMNS


def test_user_behavior_partitioning_and_clustering():
    spec = table_spec("user_behavior")
    assert (spec.partition_type, spec.partition_field) == ("DAY", "event_ts")
    assert spec.clustering == ("event_name", "product_id", "user_id")
    assert beam_additional_bq_parameters("user_behavior") == {
        "timePartitioning": {"type": "DAY", "field": "event_ts"},
        "clustering": {"fields": ["event_name", "product_id", "user_id"]},
    }


def test_every_declared_table_has_described_columns():
    assert set(table_names()) == {"user_behavior", "dead_letter", "engagement_minutely", "products", "users", "orders"}
    for name in table_names():
        fields = load_fields(name)
        assert fields, name
        for f in fields:
            assert f["description"], f"{name}.{f['name']} has no description"
            assert f["type"] in {"STRING", "INTEGER", "NUMERIC", "TIMESTAMP", "DATE", "RECORD", "BOOLEAN", "FLOAT"}


def test_unknown_table_names_the_choices():
    with pytest.raises(ValueError, match="expected one of"):
        load_fields("nope")


@pytest.fixture
def schema_copy(tmp_path, monkeypatch):
    """A private copy of bigquery_schemas/*.json that a test may edit."""
    for path in bigquery_schemas.SCHEMA_DIR.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(bigquery_schemas, "SCHEMA_DIR", tmp_path)
    bigquery_schemas._table_settings.cache_clear()
    yield tmp_path
    bigquery_schemas._table_settings.cache_clear()


def _add_column(schema_dir, table, column):
    path = schema_dir / f"{table}.json"
    fields = json.loads(path.read_text())
    fields.append(column)
    path.write_text(json.dumps(fields))


@pytest.mark.integration
def test_one_file_edit_reaches_both_table_creator_and_beam(schema_copy, bq_dataset):
    """Editing only the JSON file changes the created table and the Beam write schema alike."""
    column = {"name": "coupon_code", "type": "STRING", "mode": "NULLABLE", "description": "Coupon used."}
    _add_column(schema_copy, "user_behavior", column)

    results = {r.table_id.split(".")[-1]: r.action for r in ensure_all(bq_dataset.client, bq_dataset.dataset)}
    assert results["user_behavior"] == "updated"
    assert all(action == "unchanged" for name, action in results.items() if name != "user_behavior")

    table = bq_dataset.client.get_table(bq_dataset.table_id("user_behavior"))
    assert [f.name for f in table.schema][-1] == "coupon_code"
    assert beam_schema("user_behavior")["fields"][-1] == column


@pytest.mark.integration
def test_create_is_idempotent_and_lays_out_tables(bq_dataset):
    again = ensure_all(bq_dataset.client, bq_dataset.dataset)
    assert {r.action for r in again} == {"unchanged"}
    table = bq_dataset.client.get_table(bq_dataset.table_id("user_behavior"))
    assert table.time_partitioning.field == "event_ts"
    assert table.time_partitioning.type_ == "DAY"
    assert table.clustering_fields == ["event_name", "product_id", "user_id"]
    assert table.description == table_spec("user_behavior").description
    assert {f.name: f.field_type for f in table.schema}["price"] == "NUMERIC"


@pytest.mark.integration
@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: f.pop(), "not in the schema file"),
        (lambda f: f[0].update(type="STRING"), "is DATE in BigQuery but STRING"),
        (lambda f: f.append({"name": "x", "type": "STRING", "mode": "REQUIRED", "description": "x"}), "REQUIRED"),
        (lambda f: f[5].update(mode="REQUIRED"), "NULLABLE -> REQUIRED"),
    ],
    ids=["drop-column", "retype-column", "new-required-column", "tighten-mode"],
)
def test_incompatible_changes_are_refused_with_a_clear_message(schema_copy, bq_dataset, edit, message):
    path = schema_copy / "user_behavior.json"
    fields = json.loads(path.read_text())
    edit(fields)
    path.write_text(json.dumps(fields))
    with pytest.raises(IncompatibleSchemaChange, match=message):
        ensure_table(bq_dataset.client, bq_dataset.dataset, table_spec("user_behavior"))
    # Nothing was changed in BigQuery.
    table = bq_dataset.client.get_table(bq_dataset.table_id("user_behavior"))
    assert [f.name for f in table.schema] == SEED_COLUMNS + EXTRA_COLUMNS


@pytest.mark.integration
def test_partitioning_change_is_refused(bq_dataset):
    client = bq_dataset.client
    client.delete_table(bq_dataset.table_id("dead_letter"))
    client.create_table(
        bigquery.Table(
            bq_dataset.table_id("dead_letter"),
            schema=[bigquery.SchemaField(f["name"], f["type"], mode=f["mode"]) for f in load_fields("dead_letter")],
        )
    )
    with pytest.raises(IncompatibleSchemaChange, match="partitioning"):
        ensure_table(client, bq_dataset.dataset, table_spec("dead_letter"))


@pytest.mark.integration
def test_relaxing_and_adding_nullable_columns_is_applied(schema_copy, bq_dataset):
    path = schema_copy / "dead_letter.json"
    fields = json.loads(path.read_text())
    fields[0]["mode"] = "NULLABLE"  # stage: REQUIRED -> NULLABLE is allowed
    fields.append({"name": "retry_count", "type": "INTEGER", "mode": "NULLABLE", "description": "Retries."})
    path.write_text(json.dumps(fields))
    assert ensure_table(bq_dataset.client, bq_dataset.dataset, table_spec("dead_letter")).action == "updated"
    table = bq_dataset.client.get_table(bq_dataset.table_id("dead_letter"))
    by_name = {f.name: f for f in table.schema}
    assert by_name["stage"].mode == "NULLABLE"
    assert by_name["retry_count"].field_type == "INTEGER"
