"""Migrate tables created when ids were INT64 to the text ids of the schema files.

``user_id`` and ``product_id`` were INT64 until ids became text (any id a source system
uses: ``"42"``, a UUID, a SKU). BigQuery cannot retype a column in place, so
:mod:`bigquery_schemas.tables` refuses the change and points here. For every table whose
BigQuery schema has INTEGER where its schema file says STRING (top-level or inside a
RECORD such as ``orders.lines``), this command:

1. copies the table to ``<table>__int64_ids`` with a copy job (schema, partitioning and
   rows as they were; nothing is billed for a copy within a region);
2. checks the copy holds as many rows as the table;
3. deletes the table and creates it again from its schema file (STRING ids, the same
   partitioning, clustering and descriptions);
4. fills it from the copy with one ``INSERT ... SELECT`` that casts each INT64 id to its
   decimal text (``42`` becomes ``"42"``, the text every job now stores for the integer 42);
5. checks the row count again. The copy is kept: delete it once you are satisfied.

Stop the jobs writing to the dataset first (drain the streaming job, pause the DAGs):
between steps 3 and 4 the table is empty. Views (``user_behavior_dedup``) name the table
and keep working. Run it against real BigQuery or the emulator::

    python -m bigquery_schemas.migrate_ids --project my-analytics-prod --dataset ecommerce --dry-run
    python -m bigquery_schemas.migrate_ids --project my-analytics-prod --dataset ecommerce
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from beam_pipelines import cli, preflight
from bigquery_schemas import table_names, table_spec
from bigquery_schemas.client import make_client, query_scalar
from bigquery_schemas.ddl import ensure_table, to_schema_fields

BACKUP_SUFFIX = "__int64_ids"
_INTEGER = frozenset({"INTEGER", "INT64"})
_STRING = "STRING"


class MigrationError(RuntimeError):
    """The migration cannot go on; the message says what was found and what to do."""


@dataclass(frozen=True)
class Plan:
    table: str
    backup: str
    retyped: tuple[str, ...]  # dotted column paths, e.g. ("user_id", "lines.product_id")
    select_sql: str  # the INSERT ... SELECT of step 4


def _select_list(
    existing: Sequence[bigquery.SchemaField],
    wanted: Sequence[bigquery.SchemaField],
    path: str,
    alias: str,
    retyped: list[str],
) -> list[str]:
    """Expressions over ``existing`` producing ``wanted``'s columns, INT64 ids cast to text."""
    old_by_name = {f.name.lower(): f for f in existing}
    out = []
    for new in wanted:
        old = old_by_name.get(new.name.lower())
        ref = f"{alias}.`{old.name}`" if old is not None else None
        if old is None:
            out.append(f"null as `{new.name}`")  # a column the old table never had
        elif old.field_type.upper() in _INTEGER and new.field_type.upper() == _STRING:
            retyped.append(path + new.name)
            out.append(f"cast({ref} as string) as `{new.name}`")
        elif new.field_type.upper() == "RECORD" and old.field_type.upper() == "RECORD":
            inner_alias = f"e{len(path.split('.'))}"
            inner = ", ".join(_select_list(old.fields, new.fields, f"{path}{new.name}.", inner_alias, retyped))
            if (new.mode or "").upper() == "REPEATED":
                out.append(
                    f"array(select as struct {inner} from unnest({ref}) as {inner_alias} "
                    f"with offset as o{inner_alias} order by o{inner_alias}) as `{new.name}`"
                )
            else:
                out.append(f"(select as struct {inner} from (select {ref} as {inner_alias})) as `{new.name}`")
        else:
            out.append(f"{ref} as `{new.name}`")
    return out


def plan_table(client: bigquery.Client, dataset: str, name: str) -> Plan | None:
    """What migrating ``name`` takes, or None when it has no INT64 id left (or does not exist)."""
    table_id = f"{client.project}.{dataset}.{name}"
    try:
        existing = client.get_table(table_id)
    except NotFound:
        return None
    retyped: list[str] = []
    wanted = to_schema_fields(table_spec(name).fields)
    columns = ", ".join(_select_list(existing.schema, wanted, "", "t", retyped))
    if not retyped:
        return None
    backup = f"{name}{BACKUP_SUFFIX}"
    target = ", ".join(f"`{f.name}`" for f in wanted)
    select_sql = (
        f"insert into `{client.project}.{dataset}.{name}` ({target})\n"
        f"select {columns}\nfrom `{client.project}.{dataset}.{backup}` as t"
    )
    return Plan(name, backup, tuple(retyped), select_sql)


def _count(client: bigquery.Client, table_id: str) -> int:
    return int(query_scalar(client, f"select count(*) from `{table_id}`"))


def migrate_table(client: bigquery.Client, dataset: str, plan: Plan, log: Callable[[str], None]) -> int:
    """Run the five steps of the module docstring for one table; return its row count."""
    table_id = f"{client.project}.{dataset}.{plan.table}"
    backup_id = f"{client.project}.{dataset}.{plan.backup}"
    try:
        client.get_table(backup_id)
        raise MigrationError(
            f"{backup_id} already exists (an earlier run?): check it, then delete it "
            f"(bq rm -t {dataset}.{plan.backup}) and run again"
        )
    except NotFound:
        pass
    rows = _count(client, table_id)
    log(f"{plan.table}: [1/5] copy {rows:,} rows to {plan.backup}")
    client.copy_table(table_id, backup_id).result()
    copied = _count(client, backup_id)
    if copied != rows:
        raise MigrationError(
            f"{plan.backup} holds {copied:,} rows, {plan.table} {rows:,}: nothing was changed; "
            "delete the copy and retry"
        )
    log(f"{plan.table}: [2/5] copy checked ({copied:,} rows)")
    client.delete_table(table_id)
    log(f"{plan.table}: [3/5] recreate from bigquery_schemas/{plan.table}.json ({', '.join(plan.retyped)} now STRING)")
    ensure_table(client, dataset, table_spec(plan.table))
    client.query(plan.select_sql).result()
    written = _count(client, table_id)
    log(f"{plan.table}: [4/5] {written:,} rows filled from {plan.backup}")
    if written != rows:
        raise MigrationError(
            f"{plan.table} got {written:,} of {rows:,} rows; the original rows are in {plan.backup} "
            "(copy them back with: bq cp -f)"
        )
    log(f"{plan.table}: [5/5] done; delete {plan.backup} when satisfied (bq rm -t {dataset}.{plan.backup})")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.ArgumentParser(
        prog="python -m bigquery_schemas.migrate_ids",
        description="Retype the INT64 id columns (user_id, product_id) of existing tables to STRING, keeping "
        "every row (copy, recreate from the schema file, refill with the ids as text). Stop the jobs writing "
        "to the dataset first. Set BIGQUERY_EMULATOR_HOST (or --endpoint) to target the local emulator.",
    )
    parser.add_argument("--project", required=True, help="GCP project id, e.g. my-analytics-prod")
    parser.add_argument("--dataset", required=True, help="dataset id, e.g. ecommerce")
    parser.add_argument("--endpoint", default=None, help="emulator REST endpoint, e.g. http://127.0.0.1:9050")
    parser.add_argument("--table", action="append", help="only this table (repeatable); default: every table")
    parser.add_argument("--dry-run", action="store_true", help="print what would change and its SQL; change nothing")
    parser.add_argument(cli.VERBOSE_FLAG, action="store_true", help="print the full traceback of an error")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.table or ()) - set(table_names()))
    if unknown:
        hints = [f"{t} (did you mean {cli.closest(t, table_names())}?)" for t in unknown]
        parser.error(f"--table {', '.join(hints)}: the declared tables are {', '.join(table_names())}")
    try:
        preflight.require_bigquery(f"migrating ids in {args.project}:{args.dataset}", args.endpoint)
        preflight.require_dataset(args.project, args.dataset, args.endpoint)
        client = make_client(args.project, args.endpoint)
        plans = [p for p in (plan_table(client, args.dataset, n) for n in args.table or table_names()) if p]
        if not plans:
            print(f"nothing to migrate in {args.project}:{args.dataset}: no INT64 id column is left")
        for plan in plans:
            if args.dry_run:
                print(f"-- {plan.table}: {', '.join(plan.retyped)} INT64 -> STRING (backup {plan.backup})")
                print(plan.select_sql + ";\n")
            else:
                migrate_table(client, args.dataset, plan, log=lambda m: print(m, flush=True))
    except MigrationError as exc:
        cli.report_error(str(exc), None, args.verbose, parser.prog)
        return cli.EXIT_FAILED
    except Exception as exc:
        return cli.command_failed(
            exc, prog=parser.prog, resources=[f"{args.project}:{args.dataset}"], verbose=args.verbose
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
