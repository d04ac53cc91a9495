"""query_scalar asks again when the emulator answers an aggregate with no row."""

import pytest

from bigquery_schemas.client import query_scalar


class _Job:
    def __init__(self, rows):
        self._rows = rows

    def result(self):
        return iter(self._rows)


class _FlakyClient:
    """Answers with no row ``empty`` times, then with one row (bqemulator's observed divergence)."""

    def __init__(self, empty: int):
        self.empty, self.calls = empty, 0

    def query(self, sql, job_config=None):
        self.calls += 1
        return _Job([] if self.calls <= self.empty else [(42,)])


def test_an_empty_answer_is_asked_again():
    client = _FlakyClient(empty=2)
    assert query_scalar(client, "select count(*) from t") == 42
    assert client.calls == 3


def test_persistent_empty_answers_are_an_error_naming_the_query():
    with pytest.raises(RuntimeError, match="no row for 'select count"):
        query_scalar(_FlakyClient(empty=99), "select count(*) from t", attempts=3)


@pytest.mark.integration
def test_on_the_emulator(bq_dataset):
    assert query_scalar(bq_dataset.client, f"select count(*) from `{bq_dataset.table_id('users')}`") == 0
