"""Tests of the core behind the thin ``model_evaluation``, ``predictions`` and ``drift_report`` bodies.

Each rule of :func:`~mlops_assets.ml.evaluation.evaluation_outcome`, :func:`~mlops_assets.ml.scoring.routing_for`,
:func:`~mlops_assets.ml.scoring.score_data_version` and :func:`~mlops_assets.ml.drift.compare_with_production` is
checked per branch, against values computed by hand or by the lower-level functions they compose.
"""

import math
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from mlops_assets.ml import drift, scoring
from mlops_assets.ml.evaluation import (
    EVALUATION_TABLES,
    evaluate,
    evaluate_candidate,
    evaluation_outcome,
    numeric_metrics,
)
from mlops_assets.ml.features import SPLIT_COLUMN
from mlops_assets.ml.policy import MonitoringPolicy
from mlops_assets.ml.rollout import Phase, RolloutState
from mlops_assets.ml.routing import CHALLENGER_ARM, CHAMPION_ARM, assign_arms
from mlops_assets.ml.summaries import DriftSummary
from mlops_assets_tests.test_evaluation_gates import EVAL_SPEC, LATENCY, holdout_frame, scored_by

pytestmark = pytest.mark.core

SHA = "ab" * 32


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return holdout_frame(n=600, seed=4)


# --------------------------------------------------------------------------------------------------
# model_evaluation: evaluation_outcome / evaluate_candidate
# --------------------------------------------------------------------------------------------------

PLAIN_KEYS_WITH_PRODUCTION_HEAD = (
    "model",
    "model_version",
    "artifact_sha256",
    "production_model",
    "production_version",
    "headline_metric",
    "holdout_rows",
)
#: The headline figures (evaluation.headline_figures), in order, with production and a defined interval.
HEADLINE_KEYS = (
    "candidate_roc_auc",
    "baseline_roc_auc",
    "production_roc_auc",
    "diff_vs_production",
    "diff_vs_production_lower",
    "lift_vs_baseline_lower",
    "candidate_ece",
    "latency_single_p99_ms",
)
DIFF_KEYS = ("diff_vs_production", "diff_vs_production_lower")


def test_numeric_metrics_keeps_finite_numbers_only() -> None:
    metrics = {"a": 1, "b": True, "c": math.nan, "d": "text", "e": 2.5, "f": None, "g": math.inf, "h": np.float64(3)}
    assert numeric_metrics("p", metrics) == {"p_a": 1.0, "p_e": 2.5, "p_h": 3.0}
    assert all(type(v) is float for v in numeric_metrics("p", metrics).values())
    assert numeric_metrics("p", None) == {} and numeric_metrics("p", {}) == {}


def test_outcome_with_production_records_identity_metadata_and_tables(frame: pd.DataFrame) -> None:
    latency = replace(LATENCY, single_p99_ms=8.12345, throughput_rows_per_s=25000.06, wall_batch_p99_ms=70.0004)
    ev = evaluate(frame, EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"), scored_by("s_prod"), latency=latency)
    out = evaluation_outcome(ev, model_name="toy", model_version=4, artifact_sha256=SHA, production_version=3)

    assert out.result is ev
    assert out.record == {
        **ev.to_dict(),
        "model_name": "toy",
        "model_version": 4,
        "artifact_sha256": SHA,
        "production_version": 3,
    }
    m = out.metadata
    assert list(m) == [*PLAIN_KEYS_WITH_PRODUCTION_HEAD, *HEADLINE_KEYS, "policy"]
    assert m["model"] == "toy v4" and m["model_version"] == 4 and m["artifact_sha256"] == SHA
    assert m["production_model"] == "toy v3" and m["production_version"] == 3
    assert m["headline_metric"] == ev.headline_metric and m["holdout_rows"] == ev.n_holdout == 600
    # The headline metric of each model, the candidate's ECE, floats; the latency rounded to 3 decimals.
    assert m["candidate_roc_auc"] == pytest.approx(ev.candidate["roc_auc"])
    assert m["production_roc_auc"] == pytest.approx(ev.production["roc_auc"] if ev.production else math.nan)
    assert m["candidate_ece"] == pytest.approx(ev.candidate["ece"])
    assert all(type(m[k]) is float for k in HEADLINE_KEYS)
    assert m["latency_single_p99_ms"] == 8.123
    assert m["policy"] == out.record["policy"] == ev.to_dict()["policy"]
    vs_production = ev.production_interval
    assert vs_production is not None and vs_production.defined
    assert (m["diff_vs_production"], m["diff_vs_production_lower"]) == (
        pytest.approx(vs_production.estimate),
        pytest.approx(vs_production.lower),
    )
    # Tables in their display order, from the record.
    assert tuple(out.tables) == EVALUATION_TABLES
    comparison = {r["metric"]: r for r in out.tables["comparison"].rows}
    assert comparison["roc_auc"]["ci_high"] == pytest.approx(vs_production.upper)
    assert comparison["latency_p99_batch_ms"]["candidate"] == latency.batch_p99_ms
    assert comparison["throughput_rows_per_s"]["candidate"] == latency.throughput_rows_per_s
    slices = out.tables["slices"].rows
    assert [r["slice"] for r in slices] == [f"{s['slice_column']}={s['value']}" for s in out.record["slices"]]
    assert [r["candidate"] for r in slices] == [s["candidate"] for s in out.record["slices"]]
    (fairness,) = out.record["fairness"]
    groups = out.tables["fairness_groups"].rows
    assert [(r["attribute"], r["group"], r["rows"]) for r in groups] == [
        ("group", g["group"], g["n"]) for g in fairness["groups"]
    ]
    (gaps,) = out.tables["fairness_gaps"].rows
    assert gaps["attribute"] == "group"
    assert gaps["dp_difference"] == fairness["demographic_parity_difference"]
    assert gaps["eo_difference"] == fairness["equalized_odds_difference"]


def test_outcome_without_production_has_no_production_keys(frame: pd.DataFrame) -> None:
    ev = evaluate(frame, EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"), latency=LATENCY)
    out = evaluation_outcome(ev, model_name="toy", model_version=1, artifact_sha256=SHA, production_version=None)
    assert out.record["production_version"] is None and out.record["production"] is None
    assert out.metadata["production_model"] == "none" and out.metadata["production_version"] is None
    identity = ("production_model", "production_version")
    assert not [k for k in out.metadata if k.startswith("production_") and k not in identity]
    assert not set(DIFF_KEYS) & set(out.metadata)
    assert "baseline_roc_auc" in out.metadata and "candidate_roc_auc" in out.metadata


def test_outcome_of_invalid_candidate_scores_drops_nan_metrics_and_diff(frame: pd.DataFrame) -> None:
    bad = frame.copy()
    bad.loc[bad[SPLIT_COLUMN] == "holdout", "s_cand"] = np.nan
    ev = evaluate(bad, EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"), scored_by("s_prod"), latency=LATENCY)
    out = evaluation_outcome(ev, model_name="toy", model_version=2, artifact_sha256=SHA, production_version=1)
    # NaN figures are not shown at the top; the comparison table shows them empty.
    assert "candidate_roc_auc" not in out.metadata and "candidate_ece" not in out.metadata
    assert {r["metric"]: r for r in out.tables["comparison"].rows}["roc_auc"]["candidate"] is None
    # The interval of candidate - production is undefined (no lower bound): no diff keys.
    interval = out.record["production_interval"]
    assert interval is not None and interval["lower"] is None and "bootstrap" not in out.record
    assert not set(DIFF_KEYS) & set(out.metadata)
    assert "production_roc_auc" in out.metadata


def test_outcome_without_slices_or_protected_attributes_has_the_comparison_only(frame: pd.DataFrame) -> None:
    spec = replace(EVAL_SPEC, slices=(), protected=())
    ev = evaluate(frame, spec, scored_by("s_cand"), scored_by("s_base"), latency=LATENCY)
    out = evaluation_outcome(ev, model_name="toy", model_version=1, artifact_sha256=SHA, production_version=None)
    assert tuple(out.tables) == ("comparison",)


def test_outcome_needs_a_measured_latency(frame: pd.DataFrame) -> None:
    ev = evaluate(frame, EVAL_SPEC, scored_by("s_cand"), scored_by("s_base"))
    with pytest.raises(ValueError, match="no latency"):
        evaluation_outcome(ev, model_name="toy", model_version=1, artifact_sha256=SHA, production_version=None)


def test_evaluate_candidate_measures_latency_with_the_policy_batch_and_evaluates_under_the_policy(
    frame: pd.DataFrame,
) -> None:
    policy = EVAL_SPEC.policy.with_overrides({"latency_batch_size": 7, "decision_threshold": 0.3})
    out = evaluate_candidate(
        frame,
        EVAL_SPEC,
        scored_by("s_cand"),
        scored_by("s_base"),
        scored_by("s_prod"),
        policy=policy,
        model_version=5,
        artifact_sha256=SHA,
        production_version=2,
    )
    latency = out.result.latency
    assert latency is not None and latency.batch_size == 7
    expected = evaluate(
        frame,
        EVAL_SPEC,
        scored_by("s_cand"),
        scored_by("s_base"),
        scored_by("s_prod"),
        policy=policy,
        latency=latency,
    )
    assert out.result == expected and out.result.threshold == 0.3
    again = evaluation_outcome(
        expected, model_name=EVAL_SPEC.name, model_version=5, artifact_sha256=SHA, production_version=2
    )
    assert out.record == again.record and out.metadata == again.metadata and out.tables == again.tables
    assert out.metadata["model"] == f"{EVAL_SPEC.name} v5"


# --------------------------------------------------------------------------------------------------
# predictions: routing_for / unscored / score_data_version
# --------------------------------------------------------------------------------------------------


def _rollout(challenger: int, phase: Phase = Phase.CANARY, step: int | None = 1) -> RolloutState:
    return RolloutState(
        model_name="toy",
        champion_version=3,
        challenger_version=challenger,
        phase=phase,
        step=step,
        canary_steps=(0.05, 0.25, 0.50, 1.00),
    )


def test_routing_follows_the_rollout_of_this_challenger() -> None:
    rollout = _rollout(4)
    assert scoring.routing_for("toy", 4, rollout) == scoring.Routing(
        challenger_share=rollout.canary_steps[1], salt=rollout.salt, phase="canary"
    )
    shadow = _rollout(4, Phase.SHADOW, None)
    assert scoring.routing_for("toy", 4, shadow) == scoring.Routing(0.0, shadow.salt, "shadow")


@pytest.mark.parametrize(
    ("challenger", "rollout", "salt"),
    [
        (5, None, "toy:v5"),  # a challenger without a rollout: shadow by default
        (5, _rollout(4), "toy:v5"),  # the rollout is of another version
        (None, _rollout(4), "toy"),  # no challenger at all
        (None, None, "toy"),
    ],
)
def test_routing_without_a_rollout_of_this_challenger_serves_none(
    challenger: int | None, rollout: RolloutState | None, salt: str
) -> None:
    assert scoring.routing_for("toy", challenger, rollout) == scoring.Routing(0.0, salt, "none")


def test_routing_share_set_on_the_launchpad_replaces_the_share_and_says_so() -> None:
    rollout = _rollout(4)
    assert scoring.routing_for("toy", 4, rollout, 0.0) == scoring.Routing(
        0.0, rollout.salt, "canary (share set on the launchpad)"
    )
    assert scoring.routing_for("toy", 5, None, 0.7) == scoring.Routing(
        0.7, "toy:v5", "none (share set on the launchpad)"
    )


def test_unscored_is_an_empty_log_with_the_reason() -> None:
    out = scoring.unscored()
    assert out.log.empty and list(out.log.columns) == list(scoring.LOG_COLUMNS)
    assert out.metadata == {"scored_rows": 0, "reason": "no model in production: nothing to score with"}
    assert out.metadata["reason"] == scoring.NO_CHAMPION_REASON


SCORED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_score_data_version_with_a_canary_challenger(frame: pd.DataFrame) -> None:
    rollout = _rollout(4)
    champion = scoring.ScoringModel(3, scored_by("s_prod"))
    challenger = scoring.ScoringModel(4, scored_by("s_cand"))
    out = scoring.score_data_version(
        frame, EVAL_SPEC, "v-1", champion, challenger, rollout=rollout, share_override=None, scored_at=SCORED_AT
    )
    share = rollout.canary_steps[1]
    expected_log = scoring.prediction_log(
        frame, EVAL_SPEC, "v-1", champion, challenger, challenger_share=share, salt=rollout.salt, scored_at=SCORED_AT
    )
    pd.testing.assert_frame_equal(out.log, expected_log)
    arms = assign_arms(frame["id"].reset_index(drop=True), share, rollout.salt)
    n_challenger = int((arms == CHALLENGER_ARM).sum())
    assert 0 < n_challenger < len(frame)
    served = out.log[out.log["served"]]
    assert out.metadata == {
        "champion": "v3",
        "champion_version": 3,
        "challenger": "v4",
        "challenger_version": 4,
        "rollout_phase": "canary",
        "challenger_share": share,
        "scored_at": "2026-01-02T03:04:05+00:00",
        "scored_rows": len(frame),
        "dagster/row_count": 2 * len(frame),
        "served_by_arm": {CHALLENGER_ARM: n_challenger, CHAMPION_ARM: len(frame) - n_challenger},
        "mean_served_score": pytest.approx(float(served["score"].mean())),
    }


def test_score_data_version_without_a_challenger_serves_every_row_by_the_champion(frame: pd.DataFrame) -> None:
    champion = scoring.ScoringModel(3, scored_by("s_prod"))
    out = scoring.score_data_version(
        frame, EVAL_SPEC, "v-1", champion, None, rollout=_rollout(4), share_override=0.5, scored_at=SCORED_AT
    )
    m = out.metadata
    assert (m["challenger"], m["challenger_version"]) == ("none", 0)
    # The override is recorded even though there is no challenger to serve it.
    assert (m["rollout_phase"], m["challenger_share"]) == ("none (share set on the launchpad)", 0.5)
    assert m["served_by_arm"] == {CHAMPION_ARM: len(frame)} and m["dagster/row_count"] == len(frame)
    assert m["mean_served_score"] == pytest.approx(float(frame["s_prod"].mean()))


def test_score_data_version_of_an_empty_version_has_a_zero_mean(frame: pd.DataFrame) -> None:
    champion = scoring.ScoringModel(3, scored_by("s_prod"))
    out = scoring.score_data_version(
        frame.head(0), EVAL_SPEC, "v-0", champion, None, rollout=None, share_override=None, scored_at=SCORED_AT
    )
    assert out.metadata["scored_rows"] == 0 and out.metadata["served_by_arm"] == {}
    assert out.metadata["mean_served_score"] == 0.0


# --------------------------------------------------------------------------------------------------
# drift_report: compare_with_production
# --------------------------------------------------------------------------------------------------


def _reference() -> drift.DriftReference:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(["a", "b"], size=2000)})
    return drift.build_reference(ref, {"x": "numeric", "c": "categorical"})


def _current(null_share: float = 0.0, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.normal(size=2000) + shift
    x[: int(null_share * 2000)] = np.nan
    return pd.DataFrame({"x": x, "c": rng.choice(["a", "b"], size=2000), "extra": 1})


def test_nothing_in_production_compares_nothing() -> None:
    out = drift.compare_with_production(
        _current(), None, MonitoringPolicy(), model_name="toy", production_version=None, reference_data_versions=()
    )
    why = "no model in production"
    assert out.record == {"compared_with": None, "reason": why, "report": None}
    assert out.summary == DriftSummary(reason=why) and out.report is None


def test_a_production_version_without_reference_compares_nothing() -> None:
    out = drift.compare_with_production(_current(), None, MonitoringPolicy(), model_name="toy", production_version=3)
    why = "toy v3 has no reference"
    assert out.record == {"compared_with": None, "reason": why, "report": None}
    assert out.summary == DriftSummary(reason=why) and out.report is None


def test_a_reference_needs_its_production_version() -> None:
    with pytest.raises(ValueError, match="production version"):
        drift.compare_with_production(
            _current(), _reference(), MonitoringPolicy(), model_name="toy", production_version=None
        )


def test_comparison_records_the_report_of_the_reference_columns() -> None:
    reference, current = _reference(), _current(shift=1.0)
    out = drift.compare_with_production(
        current,
        reference,
        MonitoringPolicy(),
        model_name="toy",
        production_version=3,
        reference_data_versions=("d1", "d2"),
    )
    expected = drift.drift_report(reference, current[["x", "c"]], drift.DriftOptions(max_null_share_increase=0.05))
    assert out.report == expected
    assert out.record == {
        "compared_with": 3,
        "reference_data_versions": ["d1", "d2"],
        "reason": None,
        "report": expected.to_dict(),
    }
    assert list(out.record) == ["compared_with", "reference_data_versions", "reason", "report"]
    assert out.summary == DriftSummary(
        compared_with_model="toy",
        compared_with_version=3,
        dataset_drift=True,
        drifted_share=0.5,
        n_drifted=1,
        drifted_columns=("x",),
        null_share_increases=(),
    )
    assert out.summary.measured_against("toy", 3)


def test_comparison_uses_the_policy_limit_on_missing_values() -> None:
    reference, current = _reference(), _current(null_share=0.2)
    strict = drift.compare_with_production(
        current, reference, MonitoringPolicy(max_null_share_increase=0.05), model_name="toy", production_version=3
    )
    loose = drift.compare_with_production(
        current, reference, MonitoringPolicy(max_null_share_increase=0.5), model_name="toy", production_version=3
    )
    assert strict.summary.null_share_increases == ("x",) and strict.report is not None
    assert strict.report.options.max_null_share_increase == 0.05
    assert loose.summary.null_share_increases == () and loose.report is not None
    assert loose.report.options.max_null_share_increase == 0.5


def test_comparison_of_a_version_missing_a_reference_column_fails() -> None:
    with pytest.raises(KeyError):
        drift.compare_with_production(
            _current().drop(columns=["c"]), _reference(), MonitoringPolicy(), model_name="toy", production_version=3
        )
