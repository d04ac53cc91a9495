"""docs/bring-your-own-data.md lists every error the mapping and the import can give.

Each message fragment below is searched in the code that raises it (so a renamed
message fails here) and in the doc's error table (so a new message needs a doc line).
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "bring-your-own-data.md").read_text()
CODE = "\n".join(
    (ROOT / p).read_text()
    for p in (
        "beam_pipelines/io/source_mapping.py",
        "beam_pipelines/io/sql.py",
        "publishers/import_files.py",
        "publishers/orders_api.py",
        "publishers/source_files.py",
    )
)
FRAGMENTS = [
    "cannot read mapping file",
    "is not valid {kind}",
    "the mapping must be a table",
    "unknown key(s)",
    "unknown column(s)",
    "must be a non-empty name",
    "a table name or schema.table",
    "is longer than",
    "is not a known IANA time zone",
    "must be an IANA time zone name",
    "is not a project status",
    "is required and must come from the source",
    "must be text or a number",
    "are not {name} columns",
    "placeholders are only allowed in text and id columns",
    "not found in {where}",
    "cannot be read",
    "are not mapped; add them under [statuses]",
    "has no source column",
    "the mapping gives no default",
    "not an ISO-8601 timestamp",
    "not a date",
    "not a number",
    "not an integer",
    "must be a positive integer",
    "is not mapped: add it under [statuses]",
    "duplicate key",
    "unknown user",
    "unknown order",
    "unknown product",
    "is used by another user",
    "derived from the {what}",
    "nothing was loaded",
    "nothing to import",
    "does not exist or is not a file",
    "cannot tell the format",
    "not a readable Parquet file",
    "line is not JSON",
    "line is not a JSON object",
    "must be a non-zero integer",
    "nor a value under [statuses]",
    "must be a list of tables",
    "needs exactly one condition",
    "needs a status",
    "must be true",
    "prefix must be non-empty text",
    "equals must be text or a list of texts",
    "status_rules column",
    "serve them without --mapping",
    "refuses negative quantities",
    "the column appears twice",
    "not valid CSV",
    "not valid UTF-8 at byte offset",
    "fields but the header",
    "of the header's",
    "the object repeats the key",
    "is larger than the limit of",
    "import it with --line-export",
    "gives {exc}",
]


@pytest.mark.parametrize("fragment", FRAGMENTS)
def test_every_error_message_is_raised_by_the_code_and_listed_in_the_doc(fragment):
    assert fragment in CODE
    shown = (
        fragment.replace("{kind}", "TOML")
        .replace("{name}", "<section>")
        .replace("{where}", "table")
        .replace("{what}", "clickstream")
        .replace("{exc}", "<reason>")
    )
    assert shown in DOC or fragment.split("{")[0].strip() in DOC
