"""``dag.test()`` runs and what they left in the metadata DB, on Composer's Airflow 2.10 and on 3.x.

The one place the DAG tests branch on the Airflow version for a run:

* ``dag.test()`` takes the run's date as ``execution_date`` on 2.10; 3.x renamed it
  ``logical_date`` and added ``run_after``. Either way a manual run's data interval is
  the timetable's last complete one before that instant.
* XCom rows: on 2.10 the ORM class deserializes ``value`` when a row loads; on 3.x
  ``XComModel`` keeps the stored JSON and ``deserialize_value`` decodes it.
"""

from __future__ import annotations

import inspect
import operator
from typing import Any


def run_dag(dag: Any, run_after: Any) -> Any:
    """``dag.test()`` for the last complete interval before ``run_after``; returns the DagRun."""
    if "logical_date" in inspect.signature(dag.test).parameters:
        return dag.test(logical_date=run_after, run_after=run_after)
    return dag.test(execution_date=run_after)


def run_states(dag_run: Any) -> tuple[str, dict[str, str]]:
    """The run's state and each task's state, from the metadata DB."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return str(dag_run.state), {ti.task_id: str(ti.state) for ti in tis}


def run_xcoms(dag_run: Any) -> dict[str, Any]:
    """Every XCom the run's tasks pushed, as ``{"task_id.key": value}``."""
    from airflow.utils.session import create_session

    try:  # Airflow 3.x: the ORM model (airflow.models.XCom is the SDK class) keeps the JSON
        from airflow.models.xcom import XComModel as XCom

        value = XCom.deserialize_value
    except ImportError:  # Airflow 2.10: rows come back deserialized
        from airflow.models import XCom  # type: ignore[no-redef]

        value = operator.attrgetter("value")

    with create_session() as session:
        rows = session.query(XCom).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return {f"{row.task_id}.{row.key}": value(row) for row in rows}
