"""Where a run's time goes (``ml/profile.py``) and the native thread budget of a step (``profiling.py``)."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mlops_assets import profiling
from mlops_assets.demo_data import synthetic
from mlops_assets.ml.features import build_features
from mlops_assets.ml.profile import (
    NOT_EXECUTED,
    STEP_CPU_KEY,
    STEP_THREADS_KEY,
    STEP_WALL_KEY,
    RunEvent,
    profile_run,
)
from mlops_assets.ml.spec import load_spec
from mlops_assets.ml.training import predict_scores, tune_and_train

pytestmark = pytest.mark.core


def _measured(wall: float, cpu: float = 0.0, threads: int = 1) -> dict[str, float]:
    return {STEP_WALL_KEY: wall, STEP_CPU_KEY: cpu, STEP_THREADS_KEY: threads}


def _run(*steps: list[RunEvent], start: float = 100.0, end: float = 130.0) -> list[RunEvent]:
    return [
        RunEvent("PIPELINE_ENQUEUED", start - 7.0),
        RunEvent("PIPELINE_DEQUEUED", start - 2.0),
        RunEvent("PIPELINE_STARTING", start),
        RunEvent("PIPELINE_START", start + 3.0),
        *(e for step in steps for e in step),
        RunEvent("PIPELINE_SUCCESS", end),
    ]


def _step(key: str, begin: float, *, load: float, body: float, store: float, tail: float, cpu: float = 0.0):
    t = begin
    # planned at run start, long before the step begins: not part of the step's time
    events = [RunEvent("ASSET_MATERIALIZATION_PLANNED", 100.5, key), RunEvent("STEP_START", t, key)]
    t += load
    events.append(RunEvent("LOADED_INPUT", t, key))
    t += body
    events.append(RunEvent("STEP_OUTPUT", t, key))
    t += store
    events.append(RunEvent("HANDLED_OUTPUT", t, key))
    events.append(RunEvent("ASSET_MATERIALIZATION", t, key, _measured(body, cpu, 2)))
    t += tail
    events.append(RunEvent("STEP_SUCCESS", t, key))
    return events


def test_sequential_run_is_split_into_launch_compute_io_framework_and_between_steps() -> None:
    a = _step("a", 104.0, load=1.0, body=5.0, store=0.5, tail=0.5, cpu=9.0)  # 104 → 111
    b = _step("b", 112.0, load=2.0, body=10.0, store=1.0, tail=1.0)  # 112 → 126
    profile = profile_run(reversed(_run(a, b)))  # any order
    assert profile.queued == pytest.approx(5.0)
    assert profile.wall == pytest.approx(30.0)  # from starting to the end, the queue excluded
    assert profile.launch == pytest.approx(3.0)
    assert profile.compute == pytest.approx(15.0)
    assert profile.cpu == pytest.approx(9.0)
    assert profile.io == pytest.approx(4.5)
    assert profile.framework == pytest.approx(1.5)
    # executing span 103 → 130 = 27 s, of which the steps cover 7 + 14 = 21 s
    assert profile.between_steps == pytest.approx(6.0)
    assert profile.orchestration == pytest.approx(15.0)
    assert profile.orchestration_share == pytest.approx(0.5)
    # every second of the wall is accounted for exactly once
    parts = profile.launch + profile.compute + profile.io + profile.framework + profile.between_steps
    assert parts == pytest.approx(profile.wall)
    rows = profile.step_rows()
    assert [r["step"] for r in rows] == ["b", "a"]  # slowest first
    assert rows[1] == {
        "step": "a",
        "status": "STEP_SUCCESS",
        "wall_s": 7.0,
        "compute_s": 5.0,
        "cpu_s": 9.0,
        "threads": 2,
        "input_io_s": 1.0,
        "output_io_s": 0.5,
        "framework_s": 0.5,
        "peak_rss_mib": 0.0,
    }
    assert profile.summary()["orchestration_share"] == 0.5


def test_overlapping_steps_count_their_covered_span_once() -> None:
    # Multiprocess: two steps at once, each with its worker's interpreter start before its step start.
    a = [RunEvent("STEP_WORKER_STARTING", 104.0, "a"), *_step("a", 106.0, load=0, body=10, store=0, tail=0)]
    b = [RunEvent("STEP_WORKER_STARTING", 105.0, "b"), *_step("b", 107.0, load=0, body=10, store=0, tail=0)]
    profile = profile_run(_run(a, b, end=120.0))
    assert profile.between_steps == pytest.approx((120.0 - 103.0) - (117.0 - 104.0))
    assert [s.worker_start for s in profile.steps] == [pytest.approx(2.0), pytest.approx(2.0)]
    assert profile.compute == pytest.approx(20.0)  # compute can exceed the covered span: it ran in parallel


def test_unmeasured_and_unfinished_steps_are_reported_as_such() -> None:
    events = _run(
        [RunEvent("STEP_START", 104.0, "plain"), RunEvent("STEP_SUCCESS", 105.0, "plain")],
        [RunEvent("STEP_START", 106.0, "killed")],
        [RunEvent("ENGINE_EVENT", 107.0, "stopped")],  # "dependencies failed: not executing"
        end=110.0,
    )
    profile = profile_run(events)
    plain, killed, stopped = profile.steps
    assert stopped.status == NOT_EXECUTED and stopped.wall == 0.0
    assert not plain.measured and plain.compute == 0.0 and plain.framework == pytest.approx(1.0)
    assert killed.status == "unfinished" and killed.wall == pytest.approx(4.0)  # up to the run's end
    assert profile.orchestration == pytest.approx(profile.wall)


def test_an_empty_event_list_has_no_profile() -> None:
    with pytest.raises(ValueError, match="without events"):
        profile_run([])


def test_thread_budget_is_the_fair_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(profiling.THREADS_ENV, raising=False)
    monkeypatch.setattr(profiling, "cpu_count", lambda: 8)
    monkeypatch.setattr(profiling, "_concurrent_steps", lambda context: 3)
    budget = profiling.thread_budget()
    assert (budget.threads, budget.cores, budget.concurrent_steps) == (2, 8, 3)
    monkeypatch.setattr(profiling, "_concurrent_steps", lambda context: 16)
    assert profiling.thread_budget().threads == 1  # never 0
    monkeypatch.setenv(profiling.THREADS_ENV, "3")
    assert profiling.thread_budget().threads == 3
    assert profiling.thread_budget().source == profiling.THREADS_ENV
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv(profiling.THREADS_ENV, bad)
        with pytest.raises(ValueError, match=profiling.THREADS_ENV):
            profiling.thread_budget()
    monkeypatch.setenv(profiling.THREADS_ENV, "")  # as .env.example leaves it: the computed budget
    assert profiling.thread_budget().source == "cores // concurrent steps"


def test_training_and_scoring_give_identical_results_with_one_thread_or_many() -> None:
    """The thread budget changes speed only: the tuned gradient boosting's scores are bit-identical."""
    spec = load_spec("synthetic")
    features = build_features(synthetic.generate(3000, seed=7), spec)
    results = []
    for threads in (1, 2, 4):
        with threadpool_limits(limits=threads):
            model, search = tune_and_train(features, spec)
            results.append(predict_scores(model.pipeline, features, spec))
    assert search is not None  # the tuned search ran, not only a fixed fit
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
