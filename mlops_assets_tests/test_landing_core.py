"""The pure decisions of the landing and labels sensors and of the recorded volume gate, branch by branch.

No Dagster, no files: listings are :class:`Listed` tuples, digests come from a dict, and the instance and
registry queries are callables that record whether (and how often) they were called.
"""

import json
from dataclasses import dataclass

import pytest

from mlops_assets.ml import landing
from mlops_assets.ml.spec import load_spec
from mlops_assets.ml.triggers import RetrainPolicy
from mlops_assets.ml.validation import gate_volume_within_bounds_recorded
from mlops_assets.ml.versions import version_key

pytestmark = pytest.mark.core

A = "a" * 64
B = "b" * 64
C = "c" * 64


@dataclass(frozen=True)
class Listed:
    name: str
    size: int
    mtime_ns: int


class Calls:
    """A callable that returns fixed answers and counts its calls."""

    def __init__(self, answer):
        self.answer = answer
        self.args: list = []

    def __call__(self, *args):
        self.args.append(args)
        return self.answer(*args) if callable(self.answer) else self.answer


def _digests(mapping: dict[str, str]) -> Calls:
    return Calls(lambda name: mapping[name])


def _plan(listed, cursor=None, registered=(), digests=None, trains=(True, "bootstrap"), generation=1):
    digest_of = _digests(digests or {})
    trains_call = Calls(trains)
    generation_of = Calls(generation)
    plan = landing.plan_landing(
        listed,
        cursor,
        registered,
        digest_of,
        trains=trains_call,
        generation_of=generation_of,
        release="1.2.3",
        zone_uri="/landing/m",
    )
    return plan, digest_of, trains_call, generation_of


# --- known_digests -------------------------------------------------------------------------------------------


def test_known_digests_takes_the_digest_part_of_version_keys_and_ignores_other_partitions():
    assert landing.known_digests(["jan__aaaaaaaaaaaa", "by-hand", "x__short", "feb__bbbbbbbbbbbb"]) == {
        "aaaaaaaaaaaa",
        "bbbbbbbbbbbb",
    }


# --- trains_on_new_data --------------------------------------------------------------------------------------


def test_nothing_in_production_trains_as_bootstrap_whatever_the_policy():
    policy = RetrainPolicy(triggers=())
    assert landing.trains_on_new_data(None, policy) == (True, "bootstrap: no model in production yet")


def test_a_production_model_trains_on_new_data_only_when_the_trigger_is_enabled():
    enabled = RetrainPolicy(triggers=("new_data",))
    assert landing.trains_on_new_data(3, enabled) == (True, "retraining.triggers includes new_data")
    disabled = RetrainPolicy(triggers=("drift",))
    trains, why = landing.trains_on_new_data(3, disabled)
    assert not trains and why.startswith("production model serves")
    assert landing.trains_on_new_data(3, None)[0] is False


# --- plan_landing ----------------------------------------------------------------------------------------------


def test_a_new_file_becomes_a_version_with_its_run_key_and_training_decision():
    plan, digest_of, trains, generation_of = _plan(
        [Listed("v1.csv", 10, 100)], digests={"v1.csv": A}, trains=(False, "serves"), generation=2
    )
    key = version_key("v1.csv", A)
    assert plan.new_keys == [key]
    (version,) = plan.versions
    assert version == landing.NewVersion("v1.csv", key, 2, False, "serves", f"new_data:{key}:1.2.3:landing-2")
    assert plan.skip_reason is None
    assert json.loads(plan.cursor) == {"v1.csv": [10, 100, A]}
    assert digest_of.args == [("v1.csv",)] and len(trains.args) == 1 and generation_of.args == [(key,)]


def test_the_training_decision_is_asked_once_and_generation_once_per_new_version():
    plan, _, trains, generation_of = _plan(
        [Listed("a.csv", 1, 1), Listed("b.csv", 2, 2)], digests={"a.csv": A, "b.csv": B}
    )
    assert [v.trains for v in plan.versions] == [True, True]
    assert len(trains.args) == 1
    assert generation_of.args == [(version_key("a.csv", A),), (version_key("b.csv", B),)]


def test_registered_bytes_are_not_new_and_nothing_is_asked():
    plan, _, trains, generation_of = _plan(
        [Listed("again.csv", 1, 1)], registered=["first__" + A[:12]], digests={"again.csv": A}
    )
    assert plan.versions == () and plan.new_keys == []
    assert trains.args == [] and generation_of.args == []
    assert plan.skip_reason is not None
    assert plan.skip_reason.startswith("no new data: the 1 landed file(s) in /landing/m are all already registered")
    assert json.loads(plan.cursor) == {"again.csv": [1, 1, A]}  # listed files are remembered all the same


def test_the_same_bytes_under_two_names_in_one_tick_land_once():
    plan, *_ = _plan([Listed("a.csv", 1, 1), Listed("copy.csv", 1, 2)], digests={"a.csv": A, "copy.csv": A})
    assert plan.new_keys == [version_key("a.csv", A)]
    assert set(json.loads(plan.cursor)) == {"a.csv", "copy.csv"}


def test_an_unchanged_file_is_not_hashed_again_and_a_changed_one_is():
    cursor = json.dumps({"same.csv": [5, 50, A], "changed.csv": [5, 50, B], "gone.csv": [1, 1, C]})
    plan, digest_of, *_ = _plan(
        [Listed("changed.csv", 6, 50), Listed("same.csv", 5, 50)],
        cursor=cursor,
        registered=["same__" + A[:12]],
        digests={"changed.csv": C},
    )
    assert digest_of.args == [("changed.csv",)]
    assert plan.new_keys == [version_key("changed.csv", C)]
    assert json.loads(plan.cursor) == {"changed.csv": [6, 50, C], "same.csv": [5, 50, A]}  # gone.csv dropped


def test_a_changed_mtime_alone_rehashes():
    plan, digest_of, *_ = _plan(
        [Listed("f.csv", 5, 51)], cursor=json.dumps({"f.csv": [5, 50, A]}), digests={"f.csv": B}
    )
    assert digest_of.args == [("f.csv",)] and plan.new_keys == [version_key("f.csv", B)]


def test_an_empty_zone_says_so():
    plan, *_ = _plan([])
    assert plan.skip_reason == "no data files in the landing zone /landing/m"
    assert plan.cursor == "{}" and plan.versions == ()


def test_an_unreadable_cursor_raises():
    with pytest.raises(json.JSONDecodeError):
        _plan([], cursor="{not json")


def test_the_cursor_is_written_with_sorted_keys():
    plan, *_ = _plan([Listed("b.csv", 1, 1), Listed("a.csv", 1, 1)], digests={"a.csv": A, "b.csv": B})
    assert plan.cursor == json.dumps({"a.csv": [1, 1, A], "b.csv": [1, 1, B]}, sort_keys=True)


# --- labels ------------------------------------------------------------------------------------------------------

KEYS = ["jan__aaaaaaaaaaaa", "feb__bbbbbbbbbbbb", "jan__cccccccccccc", "by-hand"]


def test_labels_target_is_the_version_key_or_the_newest_version_of_the_stem():
    assert landing.labels_target(KEYS, "jan.csv") == "jan__cccccccccccc"
    assert landing.labels_target(KEYS, "jan__aaaaaaaaaaaa.parquet") == "jan__aaaaaaaaaaaa"
    assert landing.labels_target(KEYS, "by-hand.csv") == "by-hand"
    assert landing.labels_target(KEYS, "mar.csv") is None


def test_a_labels_file_of_a_landed_version_gets_one_run():
    digest_of = _digests({"feb.csv": B})
    plan = landing.plan_labels([Listed("feb.csv", 3, 30)], None, KEYS, digest_of, "1.2.3")
    assert plan.runs == (
        landing.LabelsRun("feb.csv", "feb__bbbbbbbbbbbb", f"new_labels:feb__bbbbbbbbbbbb:{B[:12]}:1.2.3"),
    )
    assert plan.waiting == () and plan.skip_reason is None
    assert json.loads(plan.cursor) == {"feb.csv": [3, 30, B]}


def test_labels_without_their_version_wait_unhashed_and_stay_out_of_the_cursor():
    digest_of = _digests({})
    plan = landing.plan_labels([Listed("mar.csv", 1, 1)], None, KEYS, digest_of, "r")
    assert plan.runs == () and plan.waiting == ("mar.csv",)
    assert digest_of.args == []
    assert plan.cursor == "{}"
    assert plan.skip_reason == "no new labels (1 waiting for data)"


def test_unchanged_labels_are_done_and_kept_in_the_cursor():
    cursor = json.dumps({"jan.csv": [1, 1, A]})
    digest_of = _digests({})
    plan = landing.plan_labels([Listed("jan.csv", 1, 1)], cursor, KEYS, digest_of, "r")
    assert plan.runs == () and digest_of.args == []
    assert json.loads(plan.cursor) == {"jan.csv": [1, 1, A]}
    assert plan.skip_reason == "no new labels"


def test_changed_labels_run_again_with_their_new_digest():
    cursor = json.dumps({"jan.csv": [1, 1, A]})
    plan = landing.plan_labels([Listed("jan.csv", 2, 1)], cursor, KEYS, _digests({"jan.csv": C}), "r")
    assert [r.run_key for r in plan.runs] == [f"new_labels:jan__cccccccccccc:{C[:12]}:r"]


# --- gate_volume_within_bounds_recorded ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec():
    return load_spec("synthetic")


def test_no_row_count_for_this_version_fails_closed_without_looking_back(spec):
    earlier = Calls(([], []))
    gate = gate_volume_within_bounds_recorded(
        "v2__x", {"file": "/landing/m/v2.csv"}, earlier, Calls({}), spec.policy.data
    )
    assert not gate.passed and gate.name == "volume_within_bounds"
    assert gate.message == "v2.csv: no row_count recorded for raw_data v2__x (rule: volume_within_bounds)"
    assert gate.condition == "row count / previous accepted version's row count within policy.volume_ratio_bounds"
    assert earlier.args == []


def test_without_a_file_the_version_key_names_it(spec):
    gate = gate_volume_within_bounds_recorded("v2__x", {}, Calls(([], [])), Calls({}), spec.policy.data)
    assert gate.message.startswith("v2__x: no row_count recorded")


def test_a_previous_accepted_version_without_a_row_count_fails_closed(spec):
    recorded_of = Calls({"file": "v1.csv"})
    gate = gate_volume_within_bounds_recorded(
        "v2", {"dagster/row_count": 10, "file": "v2.csv"}, Calls((["v1", "v0"], [])), recorded_of, spec.policy.data
    )
    assert not gate.passed
    assert (
        gate.message
        == "v2.csv: the previous accepted version v1 has no row_count recorded (rule: volume_within_bounds)"
    )
    assert recorded_of.args == [("v1",)]


def test_the_first_version_passes_with_nothing_to_compare(spec):
    skipped = [{"data_version": "v1", "reason": "schema_valid failed"}]
    recorded_of = Calls({})
    gate = gate_volume_within_bounds_recorded(
        "v2", {"dagster/row_count": 10}, Calls(([], skipped)), recorded_of, spec.policy.data
    )
    assert gate.passed and gate.observed is None
    assert gate.evidence["skipped"] == skipped and gate.evidence["previous_version"] is None
    assert recorded_of.args == []


def test_the_ratio_to_the_previous_accepted_version_decides(spec):
    hi = spec.policy.data.volume_ratio_bounds[1]
    previous = Calls({"dagster/row_count": 100})
    inside = gate_volume_within_bounds_recorded(
        "v2", {"dagster/row_count": 100}, Calls((["v1"], [])), previous, spec.policy.data
    )
    assert inside.passed and inside.observed == 1.0 and inside.evidence["previous_version"] == "v1"
    too_many = int(100 * hi) + 1
    outside = gate_volume_within_bounds_recorded(
        "v2", {"dagster/row_count": too_many}, Calls((["v1"], [])), previous, spec.policy.data
    )
    assert not outside.passed and outside.observed == too_many / 100
    assert outside.evidence["previous_rows"] == 100 and outside.evidence["n_rows"] == too_many


def test_lost_landings_are_registered_listed_unmaterialized_files_missing_from_the_stored_cursor() -> None:
    digest_a, digest_b = "a" * 64, "b" * 64
    listed = json.dumps({"a.csv": [1, 1, digest_a], "b.csv": [1, 1, digest_b]})
    key_a, key_b = version_key("a.csv", digest_a), version_key("b.csv", digest_b)
    stored = json.dumps({"a.csv": [1, 1, digest_a]})
    # b's tick was lost: registered, never materialized, not in the stored cursor.
    assert landing.lost_landings(stored, listed, [key_a, key_b], []) == [("b.csv", key_b)]
    assert landing.lost_landings(stored, listed, [key_a, key_b], [key_b]) == []  # it was read: it ran
    assert landing.lost_landings(stored, listed, [key_a], []) == []  # not registered: plan_landing's new version
    assert landing.lost_landings(None, listed, [key_a, key_b], [key_a]) == [("b.csv", key_b)]
