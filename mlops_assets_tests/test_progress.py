"""Long work reports where it is: a backfill's runs say which version of the backfill they are (issue 16, item 5).

Training's progress is tested in test_ml_core (search fits scored), the demo's in test_demo_and_project.
"""

from types import SimpleNamespace

import dagster as dg
import pytest

from mlops_assets.progress import BACKFILL_TAG, backfill_progress

pytestmark = pytest.mark.wiring


@dg.op
def _noop() -> None:
    return None


@dg.job
def _job() -> None:
    _noop()


def _with_status(instance: dg.DagsterInstance, run: dg.DagsterRun, status: dg.DagsterRunStatus) -> dg.DagsterRun:
    if status == dg.DagsterRunStatus.FAILURE:
        instance.report_run_failed(run)
    elif status == dg.DagsterRunStatus.SUCCESS:
        instance.report_dagster_event(
            dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name=run.job_name, message="done"),
            run_id=run.run_id,
        )
    return instance.get_run_by_id(run.run_id)


def test_a_backfill_run_says_its_position_and_how_many_runs_finished(monkeypatch: pytest.MonkeyPatch) -> None:
    with dg.instance_for_test() as instance:
        # The backfill's partitions as Dagster's backfill record gives them (only its partition_names is read).
        backfill = SimpleNamespace(partition_names=["v1", "v2", "v3", "v4"])
        monkeypatch.setattr(instance, "get_backfill", lambda backfill_id: backfill if backfill_id == "bf1" else None)
        tags = {BACKFILL_TAG: "bf1"}
        _with_status(instance, instance.create_run_for_job(_job, tags=tags), dg.DagsterRunStatus.SUCCESS)
        _with_status(instance, instance.create_run_for_job(_job, tags=tags), dg.DagsterRunStatus.FAILURE)
        current = instance.create_run_for_job(_job, tags=tags)
        line = backfill_progress(instance, current, "v3")
        assert line == "backfill bf1: data version v3 is 3 of 4; 2 of its runs finished (1 failed)"
        # A run outside any backfill says nothing.
        assert backfill_progress(instance, instance.create_run_for_job(_job), "v3") is None
