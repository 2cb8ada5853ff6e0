"""The drift/performance pending backlogs of the retrain sensors (pure core, ``mlops_assets.ml.backlog``).

Per-branch tests, the cursor format (old cursors keep loading), and a randomized equivalence test against an
oracle: the backlog logic of ``drift_sensor`` / ``performance_sensor`` as it was written inline in the sensors
(dict cursors), with the instance queries replaced by plain inputs.
"""

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_assets.ml.backlog import (
    MAX_PENDING,
    Candidate,
    DriftBacklog,
    DriftEvent,
    PendingDrift,
    PerformanceBacklog,
    PerformanceEvent,
    Production,
    newest_labelled_of,
    step_drift_backlog,
    step_performance_backlog,
)
from mlops_assets.ml.summaries import DriftSummary, PerformanceSummary, display_model
from mlops_assets.ml.triggers import RetrainDecision, RetrainPolicy

pytestmark = pytest.mark.core

MODEL = "flights"
PROD = Production(MODEL, 1, RetrainPolicy())


def drifted(version: str | None, sid: int, *, drift: bool | None = True, against: int | None = 1) -> DriftEvent:
    summary = DriftSummary(
        compared_with_model=MODEL if against is not None else None,
        compared_with_version=against,
        dataset_drift=drift,
        drifted_share=0.6,
        drifted_columns=("age",),
    )
    return DriftEvent(version, sid, summary)


def report(version: str | None, *, breached: bool | None = True, prod: int | None = 1, model: str | None = MODEL):
    summary = PerformanceSummary(
        model=model,
        production_version=prod,
        metric="roc_auc",
        realised_metric=0.6,
        sla_floor=0.7,
        sla_breached=breached,
    )
    return PerformanceEvent(version, summary)


def allowed() -> RetrainDecision:
    return RetrainDecision(True, "allowed", "allowed")


def refused(rule: str) -> RetrainDecision:
    return RetrainDecision(False, rule, f"refused: {rule}")


def never(*_: Any) -> Any:
    raise AssertionError("a lazy input was asked for although the step does not need it")


def drift_step(backlog: DriftBacklog, events: list[DriftEvent], **kw: Any):
    kw.setdefault("newly_labelled", set())
    kw.setdefault("is_labelled", set())
    kw.setdefault("production", PROD)
    kw.setdefault("registered", ["v1", "v2", "v3", "v4"])
    return step_drift_backlog(backlog, events, **kw)


# -- drift: branches --------------------------------------------------------------------------------------------------


def test_nothing_pending_asks_nothing_of_the_instance() -> None:
    step = drift_step(DriftBacklog(), [], production=never, registered=never, is_labelled=never)
    assert step.candidate is None and step.skip == "no drifted data version waiting for a retrain"
    assert step.backlog == DriftBacklog()


def test_drifted_then_labelled_becomes_a_candidate() -> None:
    first = drift_step(DriftBacklog(), [drifted("v2", 10)], drift_mark=10, labels_mark=None)
    assert first.candidate is None and first.skip == "drifted data versions wait for labels: v2"
    assert first.backlog.drift_mark == 10 and first.backlog.get("v2") == PendingDrift(
        "v2", 10, False, drifted("v2", 10).summary.evidence("v2")
    )
    second = drift_step(DriftBacklog.from_cursor(first.backlog.to_cursor()), [], newly_labelled={"v2"}, labels_mark=7)
    assert second.candidate == Candidate("drift", "v2", drifted("v2", 10).summary.evidence("v2"), ("v2",))
    assert second.backlog.labels_mark == 7 and second.backlog.drift_mark == 10
    assert second.settle(allowed()).pending == ()


def test_a_version_labelled_before_its_drift_report_is_asked_for_directly() -> None:
    asked: list[str] = []

    def is_labelled(version: str) -> bool:
        asked.append(version)
        return version == "v2"

    step = drift_step(DriftBacklog(), [drifted("v2", 10), drifted("v3", 11)], is_labelled=is_labelled)
    assert asked == ["v2", "v3"]
    assert step.candidate is not None and step.candidate.data_version == "v2"
    # A version pending from an earlier tick is not asked again: its labels come as new labels events.
    asked.clear()
    drift_step(step.backlog, [], is_labelled=is_labelled)
    assert asked == []


def test_drifted_then_a_report_without_drift_drops_the_version() -> None:
    step = drift_step(DriftBacklog(), [drifted("v2", 10), drifted("v2", 11, drift=False)])
    assert step.backlog.pending == () and step.skip == "no drifted data version waiting for a retrain"
    later = drift_step(drift_step(DriftBacklog(), [drifted("v2", 10)]).backlog, [drifted("v2", 12, drift=None)])
    assert later.backlog.pending == ()


def test_unpartitioned_reports_are_ignored() -> None:
    assert drift_step(DriftBacklog(), [drifted(None, 3), drifted("", 4)]).backlog.pending == ()


def test_the_cap_keeps_the_newest_reports() -> None:
    backlog = DriftBacklog().ingest([drifted(f"d{i:03}", 1000 - i) for i in range(MAX_PENDING + 5)])
    assert len(backlog.pending) == MAX_PENDING
    assert set(backlog.versions) == {f"d{i:03}" for i in range(MAX_PENDING)}  # the largest storage ids
    small = DriftBacklog().ingest([drifted("a", 1), drifted("b", 3), drifted("c", 2)], max_pending=2)
    assert small.versions == ("c", "b")  # kept in storage-id order, as the sensor rebuilt its dict


def test_drift_against_another_model_or_unknown_identity_is_dropped_with_a_note() -> None:
    events = [drifted("v1", 1, against=0), drifted("v2", 2, against=None), drifted("v3", 3)]
    step = drift_step(DriftBacklog(), events, newly_labelled={"v3"})
    assert step.notes == (
        "drift on v1 was measured against flights v0, production is flights v1: dropped",
        "drift on v2 was measured against an unknown model (report without identity), production is flights v1: "
        "dropped",
    )
    assert step.backlog.versions == ("v3",) and step.candidate is not None


def test_nothing_in_production_drops_everything() -> None:
    step = drift_step(DriftBacklog(), [drifted("v2", 2)], production=Production(MODEL, None, RetrainPolicy()))
    assert step.skip == "no drift against the production model (none) waiting for a retrain"
    assert step.backlog.pending == () and len(step.notes) == 1


def test_drift_disabled_clears_the_backlog() -> None:
    policy = RetrainPolicy(triggers=("stale", "manual"))
    step = drift_step(DriftBacklog(), [drifted("v2", 2)], production=Production(MODEL, 1, policy))
    assert step.skip == "trigger 'drift' is not enabled in the spec (retraining.triggers: ['stale', 'manual'])"
    assert step.backlog.pending == () and step.candidate is None


def test_the_newest_registered_labelled_version_is_the_candidate_and_settles_older_ones() -> None:
    events = [drifted("v3", 1), drifted("v1", 2), drifted("v4", 3), drifted("x", 4)]
    step = drift_step(DriftBacklog(), events, newly_labelled={"v1", "v3"})
    assert step.candidate is not None and step.candidate.data_version == "v3"
    assert step.candidate.supersedes == ("x", "v1", "v3")  # unregistered versions first, then registration order
    assert step.settle(allowed()).versions == ("v4",)
    assert step.settle(refused("duplicate")).versions == ("v4",)
    for rule in ("cooldown", "daily_cap", "in_progress", "disabled"):
        assert step.settle(refused(rule)) == step.backlog
    assert step.settle(None) == step.backlog  # held by an active rollout


def test_a_single_pending_version_needs_no_registered_order() -> None:
    step = drift_step(DriftBacklog(), [drifted("zz", 1)], newly_labelled={"zz"}, registered=never)
    assert step.candidate is not None and step.candidate.supersedes == ("zz",)


# -- drift: the cursor ------------------------------------------------------------------------------------------------


def test_the_cursor_format_is_the_sensors() -> None:
    evidence = {"trigger": "drift_report", "data_version": "v2", "compared_with": "flights v1"}
    raw = json.dumps({"drift": 12, "labels": 5, "pending": {"v2": {"sid": 12, "labelled": True, "evidence": evidence}}})
    backlog = DriftBacklog.from_cursor(raw)
    assert backlog == DriftBacklog(12, 5, (PendingDrift("v2", 12, True, evidence),))
    assert json.loads(backlog.to_cursor()) == json.loads(raw)
    assert backlog.to_cursor() == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
    # The old evidence has no identity: dropped, fail closed.
    step = drift_step(backlog, [])
    assert step.skip == "no drift against the production model (flights v1) waiting for a retrain"
    assert "an unknown model" in step.notes[0]


@pytest.mark.parametrize("raw", [None, "", "not json", "[1, 2]", '{"pending": 3}', '{"drift": "x"}'])
def test_an_unreadable_cursor_starts_over(raw: str | None) -> None:
    assert DriftBacklog.from_cursor(raw) == DriftBacklog()
    assert PerformanceBacklog.from_cursor(raw) == PerformanceBacklog()


def test_malformed_pending_entries_are_forgotten() -> None:
    raw = json.dumps({"pending": {"a": 3, "b": {"labelled": True}, "c": {"sid": 4, "evidence": []}}})
    assert DriftBacklog.from_cursor(raw).pending == (PendingDrift("c", 4, False, {}),)


def test_an_empty_backlog_cursor() -> None:
    assert DriftBacklog().to_cursor() == '{"drift":null,"labels":null,"pending":{}}'
    assert PerformanceBacklog().to_cursor() == '{"pending":null,"performance":null}'


# -- performance: branches --------------------------------------------------------------------------------------------


def perf_step(backlog: PerformanceBacklog, events: list[PerformanceEvent], **kw: Any):
    kw.setdefault("production", PROD)
    kw.setdefault("newest_labelled_version", "v3")
    return step_performance_backlog(backlog, events, **kw)


def test_no_breach_asks_nothing() -> None:
    step = perf_step(PerformanceBacklog(), [], production=never, newest_labelled_version=never, mark=4)
    assert step.skip == "no SLA breach of the production model waiting for a retrain"
    assert step.backlog == PerformanceBacklog(4, None)


def test_a_breach_becomes_a_candidate_on_the_newest_labelled_version() -> None:
    step = perf_step(PerformanceBacklog(), [report("v2")], mark=9)
    assert step.candidate == Candidate("performance", "v3", report("v2").summary.evidence("v2"))
    assert step.settle(allowed()) == PerformanceBacklog(9, None)
    for rule in ("duplicate", "disabled"):
        assert step.settle(refused(rule)).pending is None
    for rule in ("cooldown", "daily_cap", "in_progress"):
        assert step.settle(refused(rule)) == step.backlog
    assert step.settle(None) == step.backlog


def test_the_latest_report_decides() -> None:
    assert perf_step(PerformanceBacklog(), [report("v2"), report("v3", breached=False)]).backlog.pending is None
    assert perf_step(PerformanceBacklog(), [report("v2"), report("v3", breached=None)]).backlog.pending is None
    # Reports nothing in production scored, and unpartitioned ones, say nothing.
    kept = perf_step(PerformanceBacklog(), [report("v2"), report("v3", breached=False, prod=None), report(None)])
    assert kept.backlog.pending == report("v2").summary.evidence("v2")


def test_a_breach_of_another_model_is_dropped() -> None:
    step = perf_step(PerformanceBacklog(), [report("v2", prod=0)])
    assert step.skip == "the SLA breach on v2 concerned flights v0, production is flights v1: dropped"
    assert step.backlog.pending is None
    unknown = perf_step(PerformanceBacklog(), [report("v2", model=None)])
    assert unknown.skip == (
        "the SLA breach on v2 concerned v1 of an unknown model (report without production_model), "
        "production is flights v1: dropped"
    )
    nothing = perf_step(PerformanceBacklog(), [report("v2")], production=Production(MODEL, None, RetrainPolicy()))
    assert nothing.skip is not None and nothing.skip.endswith("production is none: dropped")


def test_performance_disabled_clears_the_breach() -> None:
    policy = RetrainPolicy(triggers=("drift",))
    step = perf_step(PerformanceBacklog(), [report("v2")], production=Production(MODEL, 1, policy))
    assert step.skip == "trigger 'performance' is not enabled in the spec (retraining.triggers: ['drift'])"
    assert step.backlog.pending is None


def test_a_breach_waits_for_labels() -> None:
    step = perf_step(PerformanceBacklog(), [report("v2")], newest_labelled_version=newest_labelled_of(["v1"], set()))
    assert step.skip == "SLA breached, but no data version is labelled yet" and step.backlog.pending is not None
    later = perf_step(step.backlog, [], newest_labelled_version=newest_labelled_of(lambda: ["v1", "v2"], {"v1"}))
    assert later.candidate is not None and later.candidate.data_version == "v1"


def test_the_performance_cursor_round_trips() -> None:
    raw = json.dumps({"performance": 3, "pending": {"trigger": "performance_report", "data_version": "v2"}})
    backlog = PerformanceBacklog.from_cursor(raw)
    assert backlog.to_cursor() == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))


# -- equivalence with the sensors' inline logic -----------------------------------------------------------------------


def _order(registered: Sequence[str], versions: Collection[str]) -> list[str]:
    wanted = set(versions)
    if len(wanted) <= 1:
        return sorted(wanted)
    in_order = [v for v in registered if v in wanted]
    return sorted(wanted - set(in_order)) + in_order


def oracle_drift(
    cursor: str | None,
    records: list[tuple[str | None, int, dict[str, Any]]],
    newly_labelled: set[str],
    is_labelled: Callable[[str], bool],
    drift_mark: int | None,
    labels_mark: int | None,
    production: Production,
    registered: list[str],
    decision: RetrainDecision | None,
) -> tuple[str, str | None, dict[str, Any] | None, str | None, list[str]]:
    """drift_sensor before the backlog module: (cursor, target, evidence, skip, logs)."""
    state = json.loads(cursor) if cursor else {}
    logs: list[str] = []
    pending: dict[str, dict[str, Any]] = dict(state.get("pending") or {})
    arrived: set[str] = set()
    for version, _sid, metadata in records:
        if not version:
            continue
        summary = DriftSummary.from_metadata(metadata)
        if summary.dataset_drift is True:
            pending[version] = {"sid": _sid, "labelled": False, "evidence": summary.evidence(version)}
            arrived.add(version)
        else:
            pending.pop(version, None)
    for version, entry in pending.items():
        if not entry["labelled"] and (version in newly_labelled or (version in arrived and is_labelled(version))):
            entry["labelled"] = True
    if len(pending) > MAX_PENDING:
        keep = sorted(pending, key=lambda v: pending[v]["sid"])[-MAX_PENDING:]
        pending = {v: pending[v] for v in keep}
    target = evidence = skip = None
    if not pending:
        skip = "no drifted data version waiting for a retrain"
    else:
        name, production_version, policy = production.model, production.version, production.policy
        current = display_model(name, production_version)

        def measured_against(ev: Mapping[str, Any]) -> bool:
            return production_version is not None and DriftSummary.from_metadata(ev).measured_against(
                name, production_version
            )

        for version in [v for v, e in pending.items() if not measured_against(e["evidence"])]:
            measured = DriftSummary.from_metadata(pending.pop(version)["evidence"])
            against = (
                measured.compared_with if measured.identity_known else "an unknown model (report without identity)"
            )
            logs.append(f"drift on {version} was measured against {against}, production is {current}: dropped")
        ready = [v for v, e in pending.items() if e["labelled"]]
        if not policy.enabled("drift"):
            pending.clear()
            skip = f"trigger 'drift' is not enabled in the spec (retraining.triggers: {list(policy.triggers)})"
        elif not pending:
            skip = f"no drift against the production model ({current}) waiting for a retrain"
        elif not ready:
            skip = f"drifted data versions wait for labels: {', '.join(sorted(pending))}"
        else:
            order = _order(registered, pending)
            target = max(ready, key=order.index)
            evidence = pending[target]["evidence"]
            if decision is not None and (decision.allowed or decision.rule == "duplicate"):
                for version in order[: order.index(target) + 1]:
                    pending.pop(version, None)
    new_cursor = json.dumps(
        {"drift": drift_mark, "labels": labels_mark, "pending": pending}, sort_keys=True, separators=(",", ":")
    )
    return new_cursor, target, evidence, skip, logs


VERSIONS = ["v1", "v2", "v3", "v4", "v5", "x"]
DECISIONS = st.sampled_from([None, allowed(), refused("duplicate"), refused("cooldown"), refused("in_progress")])
POLICIES = st.sampled_from([RetrainPolicy(), RetrainPolicy(triggers=("stale",))])


@st.composite
def drift_ticks(draw: st.DrawFn) -> list[dict[str, Any]]:
    ticks = []
    sid = 0
    for _ in range(draw(st.integers(1, 5))):
        records = []
        for _ in range(draw(st.integers(0, 5))):
            sid += draw(st.integers(1, 3))
            metadata = DriftSummary(
                compared_with_model=draw(st.sampled_from([MODEL, "other", None])),
                compared_with_version=draw(st.sampled_from([1, 2, None])),
                dataset_drift=draw(st.sampled_from([True, False, None])),
            ).to_metadata()
            records.append((draw(st.sampled_from([*VERSIONS, None])), sid, metadata))
        ticks.append(
            {
                "records": records,
                "newly": set(draw(st.lists(st.sampled_from(VERSIONS), max_size=3))),
                "labelled": set(draw(st.lists(st.sampled_from(VERSIONS), max_size=4))),
                "production": Production(MODEL, draw(st.sampled_from([1, 2, None])), draw(POLICIES)),
                "registered": draw(st.permutations(VERSIONS[:5])),
                "decision": draw(DECISIONS),
                "labels_mark": draw(st.sampled_from([None, 100, 200])),
            }
        )
    return ticks


@settings(max_examples=300, deadline=None)
@given(drift_ticks())
def test_drift_steps_match_the_sensors_inline_logic(ticks: list[dict[str, Any]]) -> None:
    old: str | None = None
    new: str | None = None
    for tick in ticks:
        drift_mark = tick["records"][-1][1] if tick["records"] else None
        labelled: set[str] = tick["labelled"]
        expected = oracle_drift(
            old,
            tick["records"],
            tick["newly"],
            labelled.__contains__,
            drift_mark,
            tick["labels_mark"],
            tick["production"],
            tick["registered"],
            tick["decision"],
        )
        old = expected[0]
        step = step_drift_backlog(
            DriftBacklog.from_cursor(new),
            [DriftEvent(v, sid, DriftSummary.from_metadata(m)) for v, sid, m in tick["records"]],
            newly_labelled=tick["newly"],
            is_labelled=labelled.__contains__,
            production=tick["production"],
            registered=tick["registered"],
            drift_mark=drift_mark,
            labels_mark=tick["labels_mark"],
        )
        backlog = step.settle(tick["decision"])
        # the oracle writes the marks of this tick: the backlog keeps its own when a tick reads nothing new
        new_state = json.loads(backlog.to_cursor())
        old_state = json.loads(old)
        assert new_state["pending"] == old_state["pending"]
        assert list(new_state["pending"]) == list(old_state["pending"])
        target = None if step.candidate is None else step.candidate.data_version
        evidence = None if step.candidate is None else dict(step.candidate.evidence)
        assert (target, evidence, step.skip, list(step.notes)) == expected[1:]
        new = backlog.to_cursor()
        old = json.dumps({**old_state, "drift": new_state["drift"], "labels": new_state["labels"]})


def oracle_performance(
    cursor: str | None,
    records: list[tuple[str | None, dict[str, Any]]],
    production: Production,
    target: str | None,
    decision: RetrainDecision | None,
) -> tuple[Any, str | None, str]:
    """performance_sensor before the backlog module: (pending, target, skip)."""
    state = json.loads(cursor) if cursor else {}
    pending: dict[str, Any] | None = state.get("pending")
    for version, metadata in records:
        if not version:
            continue
        summary = PerformanceSummary.from_metadata(metadata)
        if summary.production_version is None:
            continue
        pending = summary.evidence(version) if summary.sla_breached is True else None
    chosen = None
    skip = ""
    if pending is None:
        skip = "no SLA breach of the production model waiting for a retrain"
    elif not production.policy.enabled("performance"):
        pending = None
        triggers = list(production.policy.triggers)
        skip = f"trigger 'performance' is not enabled in the spec (retraining.triggers: {triggers})"
    elif production.version is None or not PerformanceSummary(
        model=pending.get("model"), production_version=pending.get("production_version")
    ).measured(production.model, production.version):
        measured = display_model(pending.get("model"), pending.get("production_version"))
        if pending.get("model") is None:
            measured = f"{measured} of an unknown model (report without production_model)"
        skip = (
            f"the SLA breach on {pending.get('data_version')} concerned {measured}, "
            f"production is {display_model(production.model, production.version)}: dropped"
        )
        pending = None
    elif target is None:
        skip = "SLA breached, but no data version is labelled yet"
    else:
        chosen = target
        if decision is not None and (decision.allowed or decision.rule in ("duplicate", "disabled")):
            pending = None
    return pending, chosen, skip


@st.composite
def performance_ticks(draw: st.DrawFn) -> list[dict[str, Any]]:
    ticks = []
    for _ in range(draw(st.integers(1, 5))):
        records = [
            (
                draw(st.sampled_from(["v1", "v2", None])),
                PerformanceSummary(
                    model=draw(st.sampled_from([MODEL, "other", None])),
                    production_version=draw(st.sampled_from([1, 2, None])),
                    sla_breached=draw(st.sampled_from([True, False, None])),
                ).to_metadata(),
            )
            for _ in range(draw(st.integers(0, 4)))
        ]
        ticks.append(
            {
                "records": records,
                "production": Production(
                    MODEL,
                    draw(st.sampled_from([1, 2, None])),
                    draw(st.sampled_from([RetrainPolicy(), RetrainPolicy(triggers=("drift",))])),
                ),
                "target": draw(st.sampled_from(["v1", "v2", None])),
                "decision": draw(DECISIONS),
            }
        )
    return ticks


@settings(max_examples=300, deadline=None)
@given(performance_ticks())
def test_performance_steps_match_the_sensors_inline_logic(ticks: list[dict[str, Any]]) -> None:
    cursor: str | None = None
    for mark, tick in enumerate(ticks):
        expected_pending, expected_target, expected_skip = oracle_performance(
            cursor, tick["records"], tick["production"], tick["target"], tick["decision"]
        )
        step = step_performance_backlog(
            PerformanceBacklog.from_cursor(cursor),
            [PerformanceEvent(v, PerformanceSummary.from_metadata(m)) for v, m in tick["records"]],
            production=tick["production"],
            newest_labelled_version=tick["target"],
            mark=mark,
        )
        backlog = step.settle(tick["decision"])
        target = None if step.candidate is None else step.candidate.data_version
        assert (backlog.pending, target, step.skip or "") == (expected_pending, expected_target, expected_skip)
        cursor = backlog.to_cursor()
        assert json.loads(cursor) == {"performance": mark, "pending": expected_pending}
