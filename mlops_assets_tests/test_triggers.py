"""The retraining policy, its hygiene rules and the staleness rule (pure core), and the spec's retraining section."""

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_assets.ml.spec import SpecError, load_spec, packaged_spec_path, spec_from_dict
from mlops_assets.ml.summaries import DriftSummary, PerformanceSummary
from mlops_assets.ml.triggers import (
    DEFAULT_TRIGGERS,
    REASONS,
    RetrainPolicy,
    RetrainPolicyError,
    RetrainRecord,
    RetrainRequest,
    assess_staleness,
    decide,
    evidence_json,
    newest_labelled,
    replay,
    retrain_policy_from_dict,
    run_key,
)

pytestmark = pytest.mark.core

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
MODEL = "flights"


def req(reason: str = "drift", version: str = "v9", at: datetime = T0, code: str = "1.0", model: str = MODEL):
    return RetrainRequest(reason=reason, data_version=version, model=model, package_version=code, at=at)


def rec(hours_ago: float, status: str = "success", reason: str = "drift", version: str = "v1", **kw: Any):
    return RetrainRecord(at=T0 - timedelta(hours=hours_ago), reason=reason, data_version=version, status=status, **kw)


# -- the policy -------------------------------------------------------------------------------------------------------


def test_defaults() -> None:
    policy = RetrainPolicy()
    expected = ("drift", "performance", "estimated_performance", "stale", "schedule", "manual")
    assert policy.triggers == DEFAULT_TRIGGERS == expected
    assert (policy.cooldown_hours, policy.max_retrains_per_day) == (6.0, 4)
    assert (policy.max_model_age_days, policy.max_versions_behind) == (30.0, 3)
    assert not policy.enabled("new_data") and policy.enabled("drift")
    assert retrain_policy_from_dict(None) == policy


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"triggers": ["drift", "vibes"]}, "retraining.triggers"),
        ({"triggers": "drift"}, "retraining.triggers"),
        ({"triggers": ["drift", "drift"]}, "retraining.triggers"),
        ({"cooldown_hours": -1}, "retraining.cooldown_hours"),
        ({"cooldown_hours": "6h"}, "retraining.cooldown_hours"),
        ({"cooldown_hours": float("nan")}, "retraining.cooldown_hours"),
        ({"max_retrains_per_day": 0}, "retraining.max_retrains_per_day"),
        ({"max_retrains_per_day": 2.5}, "retraining.max_retrains_per_day"),
        ({"max_retrains_per_day": True}, "retraining.max_retrains_per_day"),
        ({"max_model_age_days": 0}, "retraining.max_model_age_days"),
        ({"max_versions_behind": -1}, "retraining.max_versions_behind"),
        ({"cooldown": 6}, "unknown retraining keys"),
    ],
)
def test_malformed_policy_names_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(RetrainPolicyError, match=r"my\.yaml: ") as exc:
        retrain_policy_from_dict(raw, "my.yaml")
    assert key in str(exc.value)


def test_policy_parses_and_round_trips() -> None:
    raw = {"triggers": ["drift", "schedule"], "cooldown_hours": 0, "max_retrains_per_day": 1, "max_versions_behind": 0}
    policy = retrain_policy_from_dict(raw)
    assert policy.triggers == ("drift", "schedule") and policy.cooldown_hours == 0.0
    assert retrain_policy_from_dict(policy.to_dict()) == policy
    assert retrain_policy_from_dict({"triggers": []}).triggers == ()
    with pytest.raises(RetrainPolicyError):
        retrain_policy_from_dict(["drift"], "my.yaml")


# -- the spec's retraining section ------------------------------------------------------------------------------------


def _spec_file(tmp_path: Path, retraining: Any) -> Path:
    raw = yaml.safe_load(packaged_spec_path("synthetic").read_text())
    raw["retraining"] = retraining
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_spec_retraining_section_is_parsed(tmp_path: Path) -> None:
    spec = load_spec(_spec_file(tmp_path, {"triggers": ["drift", "stale"], "cooldown_hours": 12}))
    assert spec.retraining.triggers == ("drift", "stale") and spec.retraining.cooldown_hours == 12.0
    assert spec.retraining.max_retrains_per_day == 4  # unspecified keys keep their defaults
    assert load_spec("synthetic").retraining == RetrainPolicy()  # no retraining section: the defaults
    assert spec_from_dict(spec.to_dict()).retraining == spec.retraining


def test_spec_retraining_errors_name_file_and_key(tmp_path: Path) -> None:
    path = _spec_file(tmp_path, {"max_retrains_per_day": 0})
    with pytest.raises(SpecError, match=r"retraining\.max_retrains_per_day") as exc:
        load_spec(path)
    assert str(path) in str(exc.value)
    with pytest.raises(SpecError, match="'retraining' must be a mapping"):
        load_spec(_spec_file(tmp_path, ["drift"]))


def test_retraining_section_does_not_change_the_spec_fingerprint(tmp_path: Path) -> None:
    # When to retrain is not what a model is: lineage of models trained under the spec is unchanged.
    base = load_spec("synthetic")
    other = load_spec(_spec_file(tmp_path, {"cooldown_hours": 1, "triggers": ["manual"]}))
    assert other.retraining != base.retraining
    assert other.fingerprint() == base.fingerprint()


# -- decisions --------------------------------------------------------------------------------------------------------


def test_empty_history_allows() -> None:
    decision = decide(RetrainPolicy(), req(), [])
    assert decision.allowed and decision.rule == "allowed"


def test_disabled_trigger_is_denied() -> None:
    decision = decide(RetrainPolicy(triggers=("stale",)), req("drift"), [])
    assert (decision.allowed, decision.rule) == (False, "disabled")
    assert "'drift' is not enabled" in decision.message


def test_duplicate_same_reason_version_and_code_version() -> None:
    history = [rec(100, reason="drift", version="v9", package_version="1.0")]
    assert decide(RetrainPolicy(), req("drift", "v9", code="1.0"), history).rule == "duplicate"
    # Another code version (a fix) is not a duplicate; another automatic reason on the same data and code is
    # (it would train the same model again); a person asking by hand is not.
    assert decide(RetrainPolicy(), req("drift", "v9", code="1.1"), history).allowed
    assert decide(RetrainPolicy(), req("stale", "v9", code="1.0"), history).rule == "duplicate"
    assert decide(RetrainPolicy(), req("manual", "v9", code="1.0"), history).allowed
    # Even a failed or canceled run is a duplicate: the same code would do the same.
    for status in ("failure", "canceled"):
        history = [rec(100, status=status, version="v9", package_version="1.0")]
        assert decide(RetrainPolicy(), req("drift", "v9", code="1.0"), history).rule == "duplicate"


def test_in_flight_retrain_blocks() -> None:
    for status in ("queued", "started", "not_started", "requested"):
        # Within max_in_flight_hours (1.5 h by default); an older one is presumed dead (test_operations_safety.py).
        decision = decide(RetrainPolicy(cooldown_hours=0), req(), [rec(1, status=status)])
        assert decision.rule == "in_progress", status
        assert status in decision.message


def test_cooldown() -> None:
    policy = RetrainPolicy(cooldown_hours=6)
    decision = decide(policy, req(), [rec(2)])
    assert decision.rule == "cooldown"
    assert "2.0 h ago" in decision.message and "cooldown is 6 h" in decision.message
    assert (T0 + timedelta(hours=4)).isoformat(timespec="seconds") in decision.message
    assert decide(policy, req(), [rec(6)]).allowed  # exactly the cooldown later
    assert decide(policy, req(), [rec(2, status="failure")]).allowed  # a failure trained nothing
    assert decide(policy, req(), [rec(2, status="canceled")]).allowed
    assert decide(RetrainPolicy(cooldown_hours=0), req(), [rec(0)]).allowed


def test_daily_cap_counts_failures_but_not_cancellations() -> None:
    policy = RetrainPolicy(cooldown_hours=0, max_retrains_per_day=3)
    history = [rec(h, status="failure") for h in (1, 5, 23)]
    decision = decide(policy, req(), history)
    assert decision.rule == "daily_cap" and "cap is 3" in decision.message
    # The oldest of the three leaves the 24 h window one hour from now.
    assert (T0 + timedelta(hours=1)).isoformat(timespec="seconds") in decision.message
    assert decide(policy, req(), [*history[:2], rec(24, status="failure")]).allowed
    assert decide(policy, req(), [*history[:2], rec(1, status="canceled")]).allowed


def test_history_of_other_models_is_ignored_and_unknown_model_counts() -> None:
    policy = RetrainPolicy()
    assert decide(policy, req(), [rec(1, model="other")]).allowed
    assert decide(policy, req(), [rec(1, model="")]).rule == "cooldown"


def test_rule_order_duplicate_before_cooldown() -> None:
    history = [rec(1, version="v9", package_version="1.0")]
    assert decide(RetrainPolicy(), req(version="v9"), history).rule == "duplicate"


def test_requests_need_an_aware_time_and_a_known_reason() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        req(at=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="unknown retrain reason"):
        req("because")
    assert run_key("drift", "v1", "1.0") == "retrain:drift:v1:1.0" == req("drift", "v1").run_key


# -- staleness --------------------------------------------------------------------------------------------------------

VERSIONS = [f"v{i}" for i in range(1, 9)]


def test_fresh_model() -> None:
    s = assess_staleness(
        RetrainPolicy(),
        now=T0,
        trained_at=T0 - timedelta(days=3),
        trained_on=["v2"],
        versions=VERSIONS,
        labelled={"v1", "v2", "v3"},
    )
    assert not s.stale and not s.actionable and s.versions_behind == 1 and "fresh" in s.message


def test_stale_by_versions_behind() -> None:
    labelled = {"v1", "v2", "v3", "v4", "v5", "v6"}
    s = assess_staleness(
        RetrainPolicy(max_versions_behind=3),
        now=T0,
        trained_at=T0,
        trained_on=["v1", "v2"],
        versions=VERSIONS,
        labelled=labelled,
    )
    assert s.stale and s.actionable and s.versions_behind == 4
    assert (s.newest_trained, s.newest_labelled) == ("v2", "v6")
    assert "4 labelled versions behind (max 3)" in s.message
    exactly = assess_staleness(
        RetrainPolicy(max_versions_behind=4),
        now=T0,
        trained_at=T0,
        trained_on=["v2"],
        versions=VERSIONS,
        labelled=labelled,
    )
    assert not exactly.stale  # "more than N behind"


def test_unlabelled_versions_do_not_count_as_behind() -> None:
    s = assess_staleness(
        RetrainPolicy(max_versions_behind=1),
        now=T0,
        trained_at=T0,
        trained_on=["v1"],
        versions=VERSIONS,
        labelled={"v1", "v5"},
    )
    assert s.versions_behind == 1 and not s.stale


def test_stale_by_age_only_actionable_with_newer_labelled_data() -> None:
    old = T0 - timedelta(days=31)
    same = assess_staleness(
        RetrainPolicy(), now=T0, trained_at=old, trained_on=["v3"], versions=VERSIONS, labelled={"v1", "v3"}
    )
    assert same.stale and not same.actionable and "no labelled data version newer" in same.message
    newer = assess_staleness(
        RetrainPolicy(), now=T0, trained_at=old, trained_on=["v3"], versions=VERSIONS, labelled={"v3", "v4"}
    )
    assert newer.actionable and newer.newest_labelled == "v4" and "31.0 days ago" in newer.message
    assert newer.evidence()["age_days"] == 31.0


def test_training_versions_not_registered_here() -> None:
    s = assess_staleness(
        RetrainPolicy(), now=T0, trained_at=T0, trained_on=["elsewhere"], versions=VERSIONS, labelled=set(VERSIONS)
    )
    assert s.versions_behind is None and not s.stale and "unknown" in s.message


def test_newest_labelled() -> None:
    assert newest_labelled(VERSIONS, {"v2", "v5"}) == "v5"
    assert newest_labelled(VERSIONS, set()) is None


# -- signals and evidence ---------------------------------------------------------------------------------------------


def test_signals_from_metadata() -> None:
    drift = DriftSummary.from_metadata(
        {"dataset_drift": True, "drifted_share": 0.5, "drifted_columns": "a, b", "compared_with": "m v2"}
    )
    assert drift.dataset_drift and drift.evidence("v3")["drifted_columns"] == "a, b"
    assert not DriftSummary.from_metadata({"compared_with": "none", "reason": "no model"}).dataset_drift
    perf = PerformanceSummary.from_metadata(
        {"sla_breached": True, "metric": "roc_auc", "realised_metric": 0.5, "sla_floor": 0.6, "production_version": 2},
    )
    assert perf.sla_breached and perf.production_version == 2 and perf.labelled_rows is None
    assert PerformanceSummary.from_metadata({"production_version": "v4"}).production_version == 4


def test_evidence_json_is_short_and_valid() -> None:
    text = evidence_json({"share": 0.123456789, "columns": "x" * 1000, "nan": float("nan")})
    data = json.loads(text)
    assert data["share"] == 0.1235 and len(data["columns"]) <= 160 and data["nan"] is None
    many = evidence_json({f"k{i}": "y" * 150 for i in range(20)}, max_chars=300)
    assert len(many) <= 300 and json.loads(many)["truncated"] is True


# -- properties: replaying random request streams ---------------------------------------------------------------------

_requests = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=14 * 24 * 60),  # minutes after T0, two weeks
        st.sampled_from(REASONS),
        st.sampled_from(["v1", "v2", "v3"]),
        st.sampled_from(["1.0", "1.1"]),
    ),
    max_size=60,
)
_policies = st.builds(
    RetrainPolicy,
    triggers=st.sampled_from([REASONS, DEFAULT_TRIGGERS, ("drift",)]),
    cooldown_hours=st.sampled_from([0, 0.5, 6, 30]),
    max_retrains_per_day=st.integers(min_value=1, max_value=6),
)


def _stream(raw: list[tuple[int, str, str, str]]) -> list[RetrainRequest]:
    return [req(reason, version, T0 + timedelta(minutes=m), code) for m, reason, version, code in raw]


@settings(max_examples=200, deadline=None)
@given(_policies, _requests)
def test_never_more_than_the_cap_in_any_24h_window(policy: RetrainPolicy, raw) -> None:
    allowed = sorted(r.at for r in replay(policy, _stream(raw)).allowed)
    for i, start in enumerate(allowed):
        in_window = [t for t in allowed[i:] if t < start + timedelta(hours=24)]
        assert len(in_window) <= policy.max_retrains_per_day


@settings(max_examples=200, deadline=None)
@given(_policies, _requests)
def test_allowed_retrains_respect_cooldown_dedupe_and_triggers(policy: RetrainPolicy, raw) -> None:
    allowed = replay(policy, _stream(raw)).allowed
    times = sorted(r.at for r in allowed)
    assert all(b - a >= policy.cooldown for a, b in itertools.pairwise(times))
    keys = [r.run_key for r in allowed]
    assert len(keys) == len(set(keys))
    assert all(policy.enabled(r.reason) for r in allowed)


@settings(max_examples=100, deadline=None)
@given(_policies, _requests)
def test_decisions_are_deterministic_and_order_of_history_does_not_matter(policy: RetrainPolicy, raw) -> None:
    stream = _stream(raw)
    first = replay(policy, stream)
    assert replay(policy, stream) == first
    history = [r.as_record() for r in first.allowed]
    probe = req(at=T0 + timedelta(days=3))
    assert decide(policy, probe, history) == decide(policy, probe, list(reversed(history)))


def test_another_trigger_on_a_version_this_code_already_retrained_is_a_duplicate() -> None:
    policy = RetrainPolicy(cooldown_hours=0)
    done = [rec(0.1, status="failure", reason="stale", version="v9", package_version="1.0")]
    decision = decide(policy, req(reason="performance", version="v9"), done)
    assert not decision.allowed and decision.rule == "duplicate" and "same model" in decision.message
    # A new code version may retrain the same data; a person may always ask.
    assert decide(policy, req(reason="performance", version="v9", code="2.0"), done).allowed
    assert decide(policy, req(reason="manual", version="v9"), done).allowed
