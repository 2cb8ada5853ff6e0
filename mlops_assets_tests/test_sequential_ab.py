"""The always-valid A/B test (mSPRT): its statistics against independent computations, its type-I error when read
after every data version (by simulation, against the fixed-horizon z-test read the same way), its evidence from
the prediction log, and how a rollout step reads its verdict."""

import itertools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import integrate
from scipy.stats import norm
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from mlops_assets.definitions import build_defs
from mlops_assets.demo_data import synthetic
from mlops_assets.environments import local_environment
from mlops_assets.gate_records import latest_materialization_metadata
from mlops_assets.ml import abtest, performance
from mlops_assets.ml.rollout import (
    ABVerdict,
    GuardCheck,
    GuardResult,
    GuardStatus,
    Phase,
    advance,
    new_rollout,
    next_rollout_step,
    start,
    with_ab_verdict,
)
from mlops_assets.ml.spec import packaged_spec_path
from mlops_assets.ml.versions import file_digest, version_key
from mlops_assets.storage.files import write_frame_atomic
from mlops_assets.storage.registry import ModelRegistry
from mlops_assets_tests.support import model_graph

pytestmark = pytest.mark.core

ALPHA = 0.05
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


# -- per-row metrics ------------------------------------------------------------------------------------------------


def test_row_metrics_average_to_sklearns_metrics() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.3).astype(float)
    p = rng.uniform(0.01, 0.99, 400)
    assert abtest.row_metric(y, p, "log_loss").mean() == pytest.approx(log_loss(y, p), rel=1e-12)
    assert abtest.row_metric(y, p, "brier").mean() == pytest.approx(brier_score_loss(y, p), rel=1e-12)
    assert abtest.row_metric(y, p, "accuracy", threshold=0.5).mean() == pytest.approx(
        accuracy_score(y, p >= 0.5), rel=1e-12
    )
    # A threshold moves the accuracy decision: every score at or above it is a positive call.
    assert abtest.row_metric([1.0, 0.0], [0.2, 0.1], "accuracy", threshold=0.15).tolist() == [1.0, 1.0]


def test_log_loss_clips_certain_wrong_scores_to_a_finite_loss() -> None:
    losses = abtest.row_metric([1.0, 0.0, 1.0], [0.0, 1.0, 1.0], "log_loss")
    assert losses[0] == pytest.approx(-math.log(abtest.LOG_LOSS_EPS))
    assert losses[1] == pytest.approx(-math.log(abtest.LOG_LOSS_EPS))
    assert losses[2] == pytest.approx(-math.log1p(-abtest.LOG_LOSS_EPS))


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0.0, 2.0], [0.1, 0.2], "labels must be 0/1"),
        ([0.0, 1.0], [0.1, 1.2], "scores must be finite probabilities"),
        ([0.0, 1.0], [0.1, float("nan")], "scores must be finite probabilities"),
        ([0.0, 1.0], [0.1], "aligned"),
    ],
)
def test_row_metric_refuses_bad_input(labels: list[float], scores: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        abtest.row_metric(labels, scores, "log_loss")
    with pytest.raises(ValueError, match="metric must be one of"):
        abtest.row_metric([0.0], [0.5], "auc")


# -- the mixture likelihood ratio and the confidence sequence -------------------------------------------------------


@pytest.mark.parametrize(("d", "v", "tau"), [(0.01, 1e-5, 0.02), (-0.03, 4e-4, 0.02), (0.0, 1e-3, 0.05)])
def test_mixture_likelihood_ratio_is_the_integral_over_the_normal_mixture(d: float, v: float, tau: float) -> None:
    # Λ = ∫ N(d; θ, v) / N(d; 0, v) · N(θ; 0, τ²) dθ, integrated numerically, independently of the closed form.
    sd = math.sqrt(v)

    def integrand(theta: float) -> float:
        return float(norm.pdf(d, theta, sd) / norm.pdf(d, 0.0, sd) * norm.pdf(theta, 0.0, tau))

    value, _ = integrate.quad(integrand, -10 * tau, 10 * tau, points=[d], limit=200)
    assert math.exp(float(abtest.msprt_log_likelihood_ratio(d, v, tau))) == pytest.approx(value, rel=1e-6)


def test_confidence_sequence_ends_are_where_the_likelihood_ratio_reaches_one_over_alpha() -> None:
    d, v, tau = 0.004, 2e-6, 0.02
    half = float(abtest.msprt_half_width(v, tau, ALPHA))
    for end in (d - half, d + half):
        log_lr = float(abtest.msprt_log_likelihood_ratio(d, v, tau, null_value=end))
        assert log_lr == pytest.approx(math.log(1 / ALPHA), rel=1e-9)
    assert float(abtest.msprt_log_likelihood_ratio(d, v, tau, null_value=d)) < math.log(1 / ALPHA)


# -- the test on strata ---------------------------------------------------------------------------------------------


def _stratum(rng: np.random.Generator, n: int, shift: float, sd: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    champion = rng.gamma(2.0, 0.25, n)
    return champion, champion + shift + sd * rng.standard_normal(n)


def test_one_stratum_is_the_textbook_msprt_of_the_mean_difference() -> None:
    rng = np.random.default_rng(7)
    champion, challenger = _stratum(rng, 800, 0.02)
    result = abtest.msprt_test({"v1": (champion, challenger)}, metric="log_loss", alpha=ALPHA, mixture_sd=0.02)
    x = challenger - champion
    v = x.var(ddof=1) / x.size
    t2 = 0.02**2
    log_lr = 0.5 * math.log(v / (v + t2)) + t2 * x.mean() ** 2 / (2 * v * (v + t2))  # Johari et al., written out
    assert result.difference == pytest.approx(x.mean(), rel=1e-12)
    assert result.standard_error == pytest.approx(math.sqrt(v), rel=1e-12)
    assert result.log_likelihood_ratio == pytest.approx(log_lr, rel=1e-9)
    assert result.p_value == pytest.approx(min(1.0, math.exp(-log_lr)), rel=1e-9)
    assert result.n == 800 and result.champion_mean == pytest.approx(champion.mean())
    assert result.challenger_mean == pytest.approx(challenger.mean())


def test_strata_combine_with_inverse_variance_weights() -> None:
    rng = np.random.default_rng(8)
    a, b = _stratum(rng, 500, 0.01, sd=0.2), _stratum(rng, 2000, -0.005, sd=0.6)
    result = abtest.msprt_test({"v1": a, "v2": b}, metric="brier", alpha=ALPHA, mixture_sd=0.02)
    xa, xb = a[1] - a[0], b[1] - b[0]
    wa, wb = xa.size / xa.var(ddof=1), xb.size / xb.var(ddof=1)
    assert result.difference == pytest.approx((wa * xa.mean() + wb * xb.mean()) / (wa + wb), rel=1e-12)
    assert result.standard_error == pytest.approx(1 / math.sqrt(wa + wb), rel=1e-12)
    # Not the pooled mean: the noisier version counts less than its rows would make it.
    assert result.difference != pytest.approx(np.concatenate([xa, xb]).mean(), rel=1e-3)
    assert [s.key for s in result.strata] == ["v1", "v2"]
    assert result.strata[0].mean_difference == pytest.approx(xa.mean())
    assert result.strata[0].difference == pytest.approx(xa.mean())  # the estimate after the first version alone


def test_p_value_only_falls_and_the_confidence_sequence_only_shrinks() -> None:
    rng = np.random.default_rng(11)
    strata = {f"v{k:02d}": _stratum(rng, 300, 0.0) for k in range(15)}
    result = abtest.msprt_test(strata, metric="log_loss", alpha=ALPHA, mixture_sd=0.02)
    p_values = [s.p_value for s in result.strata]
    lows = [s.cs_low for s in result.strata]
    highs = [s.cs_high for s in result.strata]
    assert all(a >= b for a, b in itertools.pairwise(p_values))
    assert all(a is not None and b is not None and a <= b for a, b in itertools.pairwise(lows))
    assert all(a is not None and b is not None and a >= b for a, b in itertools.pairwise(highs))
    assert result.p_value == p_values[-1] and (result.cs_low, result.cs_high) == (lows[-1], highs[-1])


@pytest.mark.parametrize(
    ("metric", "shift", "winner"),
    [
        ("log_loss", -0.05, "challenger"),  # lower loss: the challenger is better
        ("log_loss", 0.05, "champion"),
        ("brier", -0.05, "challenger"),
        ("accuracy", 0.05, "challenger"),  # higher accuracy: the challenger is better
        ("accuracy", -0.05, "champion"),
    ],
)
def test_a_clear_difference_names_the_better_arm(metric: str, shift: float, winner: str) -> None:
    rng = np.random.default_rng(5)
    strata = {f"v{k}": _stratum(rng, 1000, shift) for k in range(3)}
    result = abtest.msprt_test(strata, metric=metric, alpha=ALPHA, mixture_sd=0.02)
    assert (result.decision, result.winner) == ("winner", winner)
    assert result.p_value <= ALPHA and result.decided_at == "v0"
    assert result.cs_low is not None and result.cs_high is not None
    assert (result.cs_low > 0) == (shift > 0) and (result.cs_high < 0) == (shift < 0)  # 0 is outside, on one side
    record = result.to_record()
    assert record["method"] == "msprt" and record["winner"] == winner and record["metric"] == metric


def test_no_difference_needs_an_equivalence_margin_and_a_sequence_inside_it() -> None:
    rng = np.random.default_rng(2)
    strata = {f"v{k}": _stratum(rng, 5000, 0.0, sd=0.1) for k in range(4)}
    without = abtest.msprt_test(strata, metric="log_loss", alpha=ALPHA, mixture_sd=0.02)
    assert without.decision == "continue" and without.winner is None
    within = abtest.msprt_test(strata, metric="log_loss", alpha=ALPHA, mixture_sd=0.02, equivalence_margin=0.01)
    assert within.cs_low is not None and within.cs_high is not None
    assert within.cs_low > -0.01 and within.cs_high < 0.01 and within.decision == "no_difference"
    too_tight = abtest.msprt_test(strata, metric="log_loss", alpha=ALPHA, mixture_sd=0.02, equivalence_margin=1e-5)
    assert too_tight.decision == "continue"


def test_strata_without_usable_rows_are_left_out_and_say_why() -> None:
    rng = np.random.default_rng(4)
    same = np.full(200, 0.3)
    result = abtest.msprt_test(
        {
            "few": _stratum(rng, abtest.MIN_STRATUM_ROWS - 1, 0.5),
            "equal": (same, same),  # the models agree on every row (decision accuracy at a 0.2 % positive rate)
            "ok": _stratum(rng, 400, 0.0),
            "empty": (np.array([]), np.array([])),
        },
        metric="accuracy",
        alpha=ALPHA,
        mixture_sd=0.02,
    )
    by_key = {s.key: s for s in result.strata}
    assert not by_key["few"].used and "rows needed" in by_key["few"].note
    assert not by_key["equal"].used and "no variance" in by_key["equal"].note
    assert by_key["ok"].used and by_key["ok"].note == ""
    assert not by_key["empty"].used and by_key["empty"].champion_mean is None
    assert result.n == 400 and result.to_metadata()["versions_used"] == 1


def test_without_data_the_test_continues_with_p_one() -> None:
    result = abtest.msprt_test({}, metric="log_loss")
    assert (result.decision, result.p_value, result.difference, result.n) == ("continue", 1.0, None, 0)
    assert "nothing to test" in result.reading()
    metadata = result.to_metadata()
    assert metadata["p_value"] == 1.0 and "difference" not in metadata and metadata["winner"] == "none"


def test_metadata_and_reading_carry_the_fixed_names() -> None:
    rng = np.random.default_rng(9)
    result = abtest.msprt_test(
        {"2013-01": _stratum(rng, 600, -0.03), "2013-02": _stratum(rng, 600, -0.03)}, metric="log_loss"
    )
    metadata = result.to_metadata()
    for key in ("method", "metric", "decision", "winner", "p_value", "n", "difference", "cs_low", "cs_high"):
        assert key in metadata
    assert (metadata["method"], metadata["metric"], metadata["n"]) == ("msprt", "log_loss", 1200)
    assert metadata["champion_log_loss"] == pytest.approx(result.champion_mean)
    text = result.reading()
    assert "always-valid p" in text and "challenger − champion" in text and "stratified by data version" in text
    assert f"{result.difference:+.4f}" in text and "lower is better" in text
    assert len(text) < 1500
    rows = result.strata_rows()
    assert [r["key"] for r in rows] == ["2013-01", "2013-02"] and set(abtest.STRATUM_COLUMNS) == set(rows[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "auc"}, "metric must be one of"),
        ({"metric": "log_loss", "alpha": 1.0}, "alpha"),
        ({"metric": "log_loss", "mixture_sd": 0.0}, "mixture_sd"),
        ({"metric": "log_loss", "equivalence_margin": 0.0}, "equivalence_margin"),
    ],
)
def test_msprt_refuses_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        abtest.msprt_test({}, **kwargs)


def test_msprt_refuses_misaligned_or_non_finite_values() -> None:
    with pytest.raises(ValueError, match=r"'v1'.*aligned"):
        abtest.msprt_test({"v1": (np.zeros(3), np.zeros(4))}, metric="log_loss")
    with pytest.raises(ValueError, match=r"'v1'.*finite"):
        abtest.msprt_test({"v1": (np.zeros(3), np.array([0.0, np.nan, 0.0]))}, metric="log_loss")


# -- peeking, by simulation -----------------------------------------------------------------------------------------


def test_read_after_each_of_20_versions_msprt_keeps_alpha_and_the_fixed_horizon_test_does_not() -> None:
    sim = abtest.simulate_peeking(experiments=2000, versions=20, rows_per_version=500, alpha=ALPHA, seed=0)
    print("\n" + sim.summary())
    assert abs(sim.mean_difference) < 1e-3  # the null: the two models are exchangeable
    assert sim.msprt_rate <= ALPHA
    assert sim.ztest_peeking_rate > 2 * ALPHA
    assert sim.served_ztest_peeking_rate > 2 * ALPHA
    # Read once, the z-test holds its level (binomial sd of a 5 % rate over 2000 rollouts: 0.5 point).
    assert abs(sim.ztest_final_rate - ALPHA) < 0.025


def test_msprt_detects_a_real_difference() -> None:
    sim = abtest.simulate_peeking(experiments=500, versions=20, rows_per_version=500, challenger_noise_sd=0.3, seed=1)
    print("\n" + sim.summary())
    assert sim.mean_difference < -0.005  # the challenger's log loss is lower
    assert sim.msprt_rate >= 0.9


def test_simulation_refuses_too_few_rows() -> None:
    with pytest.raises(ValueError, match="rows_per_version"):
        abtest.simulate_peeking(rows_per_version=abtest.MIN_STRATUM_ROWS - 1)


# -- evidence from the prediction log -------------------------------------------------------------------------------


def _joined_log(version: str, ids: list[str], champion: list[float], challenger: list[float], labels: list[float]):
    rows = []
    for model, arm, scores in ((3, "champion", champion), (4, "challenger", challenger)):
        for i, (row_id, score, label) in enumerate(zip(ids, scores, labels, strict=True)):
            rows.append(
                {
                    "data_version": version,
                    "row_id": row_id,
                    "model_version": model,
                    "arm": arm,
                    "served": (i % 2 == 0) == (arm == "challenger"),
                    "score": score,
                    "label": label,
                }
            )
    return pd.DataFrame(rows)


def test_paired_values_pair_rows_within_their_version_and_skip_unlabelled_or_failed_rows() -> None:
    # Both versions use row ids "0", "1", "2": pairing on the id alone would cross the versions.
    older = _joined_log("a", ["0", "1", "2"], [0.2, 0.7, 0.4], [0.1, 0.9, float("nan")], [0.0, 1.0, 1.0])
    newer = _joined_log("b", ["0", "1", "2"], [0.6, 0.3, 0.5], [0.5, 0.2, 0.8], [1.0, float("nan"), 0.0])
    joined = pd.concat([newer, older], ignore_index=True)
    values = performance.paired_metric_values(joined, 3, 4, ["a", "b", "c"], metric="brier")
    assert list(values) == ["a", "b", "c"]
    champion_a, challenger_a = values["a"]
    assert champion_a.tolist() == pytest.approx([0.2**2, 0.3**2])  # row 2: the challenger failed (NaN)
    assert challenger_a.tolist() == pytest.approx([0.1**2, 0.1**2])
    champion_b, challenger_b = values["b"]
    assert champion_b.tolist() == pytest.approx([0.4**2, 0.5**2])  # row 1: no label yet
    assert challenger_b.tolist() == pytest.approx([0.5**2, 0.8**2])
    assert values["c"][0].size == 0 and values["c"][1].size == 0


# -- how a rollout step reads the verdict ---------------------------------------------------------------------------


def _canary_guards() -> GuardResult:
    check = GuardCheck("auc_drop", GuardStatus.PASS, 0.0, 0.01, "fine")
    return GuardResult("canary", 5000, 1000, (check,))


def _record(decision: str, winner: str | None, p_value: float) -> dict:
    return {
        "challenger_version": 4,
        "method": "msprt",
        "metric": "log_loss",
        "decision": decision,
        "winner": winner,
        "p_value": p_value,
        "difference": 0.01 if winner == "champion" else -0.001,
        "alpha": 0.05,
    }


def test_an_msprt_verdict_is_read_at_every_step_and_continue_passes() -> None:
    verdict = ABVerdict.from_record(_record("continue", None, 0.4))
    assert verdict is not None and (verdict.method, verdict.metric, verdict.readable) == ("msprt", "log_loss", True)
    guards = with_ab_verdict(_canary_guards(), verdict)
    check = guards.checks[-1]
    assert (check.name, check.status, check.value, check.limit) == ("ab_test", GuardStatus.PASS, 0.4, 0.05)
    assert "mSPRT on log_loss: continue" in check.detail and "always-valid p=0.4" in check.detail
    assert guards.status is GuardStatus.PASS
    # The fixed-horizon verdict before its horizon stays unread (a peek).
    fixed = ABVerdict(4, "continue", p_value=0.001)
    assert not fixed.readable and with_ab_verdict(_canary_guards(), fixed) == _canary_guards()
    # Shadow guards are never touched: the challenger serves nothing there.
    shadow = GuardResult("shadow", 5000, 1000, ())
    assert with_ab_verdict(shadow, verdict) is shadow


def test_a_significant_champion_win_rolls_the_canary_back_and_a_challenger_win_skips_no_step() -> None:
    state = advance(
        start(new_rollout("flights", 3, 4, canary_steps=(0.05, 0.25, 1.0)), T0),
        GuardResult("shadow", 5000, 1000, (GuardCheck("agreement", GuardStatus.PASS, 0.9, 0.8, "ok"),)),
        T0 + timedelta(minutes=1),
    )
    assert (state.phase, state.step) == (Phase.CANARY, 0)
    now = T0 + timedelta(hours=1)
    lost = next_rollout_step(
        state, _canary_guards(), ABVerdict.from_record(_record("winner", "champion", 0.01)), now, switch_refusals=list
    )
    assert lost.move == "rollback" and lost.reason.endswith(": ab_test")
    won = next_rollout_step(
        state, _canary_guards(), ABVerdict.from_record(_record("winner", "challenger", 0.01)), now, switch_refusals=list
    )
    assert won.move == "advance" and (won.after.phase, won.after.step) == (Phase.CANARY, 1)


# -- the ab_test asset in a real rollout ----------------------------------------------------------------------------


@pytest.mark.e2e
def test_the_ab_test_asset_runs_the_policys_sequential_test_on_every_labelled_row_both_models_scored(
    tmp_path: Path,
) -> None:
    raw = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    raw["policy"] = {**raw.get("policy", {}), "rollout_min_rows": 100}
    spec_path = tmp_path / "synthetic_rollout.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    graph = model_graph(str(spec_path))
    env = local_environment(tmp_path / "data")
    defs = build_defs(env, [graph.model])
    landing = tmp_path / "data" / "landing" / "synthetic"
    landing.mkdir(parents=True, exist_ok=True)
    rows = 2500
    with dg.DagsterInstance.ephemeral() as instance:

        def run(job: str, key: str) -> None:
            defs.resolve_job_def(graph.name(job)).execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False
            )

        def land(i: int, job: str, seed: int) -> str:
            frame = synthetic.generate(rows, seed=seed, start_id=(i - 1) * rows)
            path = write_frame_atomic(frame, landing / f"synthetic_v{i:03d}.csv", fmt="csv")
            key = version_key(path.name, file_digest(path))
            instance.add_dynamic_partitions(graph.partitions_name, [key])
            run(job, key)
            return key

        land(1, "lifecycle_job", seed=1)
        second = land(2, "ingest_job", seed=4)
        run("retrain_job", second)
        registry = ModelRegistry(env.resources["registry"].url)
        assert registry.active_rollout("synthetic") is not None
        third = land(3, "ingest_job", seed=13)  # scored in shadow: both models score every row
        metadata = latest_materialization_metadata(instance, graph.key("ab_test"), third)
        assert (metadata["method"], metadata["metric"]) == ("msprt", "log_loss")
        assert metadata["n"] == rows  # every labelled row both models scored, not only the served ones
        assert 0.0 < metadata["p_value"] <= 1.0 and metadata["decision"] in ("continue", "winner")
        assert "always-valid p" in str(metadata["reading"])
        stored = env.resources["io_manager"].load_value(graph.key("ab_test"), third)
        assert stored["method"] == "msprt" and stored["data_versions"] == [third]
        assert [s["key"] for s in stored["strata"]] == [third] and stored["strata"][0]["n"] == rows
        verdict = ABVerdict.from_record(stored)
        assert verdict is not None and verdict.readable and verdict.challenger_version == 2
