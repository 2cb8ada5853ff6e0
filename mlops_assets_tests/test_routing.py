"""Tests for deterministic champion/challenger routing and the feature hash."""

import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_assets.ml.routing import assign_arms, feature_hash, routing_uniforms

pytestmark = pytest.mark.core

SALT = "flights_delay:v3->v4"


def _independent_uniform(salt: str, row_id: object) -> float:
    # The documented definition, written out: first 53 bits of sha256("<len(salt)>:<salt>:<str(id)>").
    digest = hashlib.sha256(f"{len(salt)}:{salt}:{row_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / 2**53


def test_routing_follows_the_documented_hash() -> None:
    ids = pd.Series([0, 1, 17, 123456789, "user-42", "ü"])
    expected = [_independent_uniform(SALT, i) for i in ids]

    assert routing_uniforms(ids, SALT).tolist() == expected
    arms = assign_arms(ids, 0.5, SALT)
    assert arms.tolist() == ["challenger" if u < 0.5 else "champion" for u in expected]


def test_routing_is_stable_across_calls_and_id_types() -> None:
    ids = pd.Series(range(10_000))
    first = assign_arms(ids, 0.25, SALT)

    assert np.array_equal(first, assign_arms(ids, 0.25, SALT))
    assert np.array_equal(first, assign_arms(ids.astype(str), 0.25, SALT))  # 42 and "42" route alike
    assert np.array_equal(first[::-1], assign_arms(ids[::-1].reset_index(drop=True), 0.25, SALT))  # per row
    assert set(first.tolist()) == {"champion", "challenger"}


_CHILD = """
import sys, json
import pandas as pd
from mlops_assets.ml.routing import assign_arms, feature_hash
ids = pd.Series(range(2000))
frame = pd.DataFrame({"distance": [float(i) / 7 for i in range(50)], "carrier": ["AA", "DL"] * 25})
print(json.dumps({"arms": assign_arms(ids, 0.3, sys.argv[1]).tolist(), "hashes": feature_hash(frame).tolist()}))
"""


def test_routing_and_feature_hash_are_stable_across_processes() -> None:
    ids = pd.Series(range(2000))
    frame = pd.DataFrame({"distance": [float(i) / 7 for i in range(50)], "carrier": ["AA", "DL"] * 25})
    expected = {"arms": assign_arms(ids, 0.3, SALT).tolist(), "hashes": feature_hash(frame).tolist()}

    for seed in ("0", "12345"):
        # Different string-hash seeds: nothing may depend on Python's randomised hash().
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, SALT], env=env, capture_output=True, text=True, check=True, timeout=120
        )
        assert json.loads(out.stdout) == expected


@settings(max_examples=50)
@given(shares=st.lists(st.floats(0, 1), min_size=2, max_size=5), salt=st.text(max_size=8))
def test_raising_the_share_only_moves_rows_to_the_challenger(shares: list[float], salt: str) -> None:
    ids = pd.Series(range(3000))
    previous = np.zeros(len(ids), dtype=bool)
    for share in sorted(shares):
        challenger = assign_arms(ids, share, salt) == "challenger"
        assert not (previous & ~challenger).any()  # nobody goes back to the champion
        previous = challenger


def test_canary_steps_are_nested() -> None:
    ids = pd.Series([f"user-{i}" for i in range(20_000)])
    sets = [set(ids[assign_arms(ids, share, SALT) == "challenger"]) for share in (0.05, 0.25, 0.50, 1.00)]

    assert sets[0] < sets[1] < sets[2] < sets[3] == set(ids)


@pytest.mark.parametrize("share", [0.01, 0.05, 0.25, 0.5, 0.9])
def test_share_accuracy_on_100k_ids(share: float) -> None:
    n = 100_000
    fraction = float((assign_arms(pd.Series(range(n)), share, SALT) == "challenger").mean())

    # Five binomial standard deviations: a correct uniform hash is inside with probability ~1 - 6e-7.
    assert abs(fraction - share) <= 5 * math.sqrt(share * (1 - share) / n)


def test_extreme_shares_and_salts() -> None:
    ids = pd.Series(range(5000))

    assert (assign_arms(ids, 0.0, SALT) == "champion").all()
    assert (assign_arms(ids, 1.0, SALT) == "challenger").all()
    a = assign_arms(ids, 0.5, "rollout-a") == "challenger"
    b = assign_arms(ids, 0.5, "rollout-b") == "challenger"
    # Independent splits overlap on about a quarter of the rows, not on half.
    assert 0.2 < float((a & b).mean()) < 0.3
    # The salt is length-prefixed: moving characters between salt and id changes the route.
    assert routing_uniforms(pd.Series(["c"]), "ab")[0] != routing_uniforms(pd.Series(["bc"]), "a")[0]


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_invalid_share_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="challenger_share"):
        assign_arms(pd.Series([1, 2]), share, SALT)


def test_missing_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="missing ids"):
        assign_arms(pd.Series([1.0, None]), 0.5, SALT)


# -- feature hash ----------------------------------------------------------------------------------


def test_feature_hash_is_the_documented_canonical_digest() -> None:
    frame = pd.DataFrame({"b": [1.5, None], "a": ["x", "y"]}, index=[10, 11])
    hashes = feature_hash(frame)

    expected_first = hashlib.sha256(b'{"a":"x","b":1.5}').hexdigest()
    expected_second = hashlib.sha256(b'{"a":"y","b":null}').hexdigest()
    assert hashes.tolist() == [expected_first, expected_second]
    assert hashes.index.tolist() == [10, 11]
    assert hashes.name == "feature_hash"


def test_feature_hash_ignores_column_order_and_numeric_dtype() -> None:
    frame = pd.DataFrame({"distance": [100, 250, 3], "carrier": ["AA", "DL", "UA"], "late": [True, False, True]})
    as_float = frame.astype({"distance": "float64"})
    reordered = frame[["late", "carrier", "distance"]]
    categorical = frame.astype({"carrier": "category"})
    nullable = frame.astype({"distance": "Int64", "late": "boolean"})

    base = feature_hash(frame)
    for variant in (as_float, reordered, categorical, nullable):
        assert feature_hash(variant).tolist() == base.tolist()


def test_feature_hash_distinguishes_what_a_model_distinguishes() -> None:
    frame = pd.DataFrame({"x": [1, 1, 2], "y": ["1", "1", "1"]})
    hashes = feature_hash(frame).tolist()
    assert hashes[0] == hashes[1] != hashes[2]

    as_number = feature_hash(pd.DataFrame({"x": [1]})).iloc[0]
    assert as_number != feature_hash(pd.DataFrame({"x": ["1"]})).iloc[0]
    renamed = feature_hash(pd.DataFrame({"z": [1], "y": ["1"]})).iloc[0]
    assert renamed != hashes[0]  # the column name is part of the input
    missing = {feature_hash(pd.DataFrame({"x": [v]}, dtype=object)).iloc[0] for v in (None, float("nan"), pd.NA)}
    assert len(missing) == 1  # every flavour of missing is the same input
    assert missing != {feature_hash(pd.DataFrame({"x": ["null"]})).iloc[0]}


def test_feature_hash_handles_timestamps_and_refuses_duplicates() -> None:
    when = pd.Timestamp("2024-05-01 10:00:00", tz="UTC")
    frame = pd.DataFrame({"t": [when, pd.NaT]})
    hashes = feature_hash(frame)
    assert hashes.iloc[0] == hashlib.sha256(f'{{"t":t:{when.isoformat()}}}'.encode()).hexdigest()
    assert hashes.iloc[1] == hashlib.sha256(b'{"t":null}').hexdigest()

    with pytest.raises(ValueError, match="duplicate"):
        feature_hash(pd.DataFrame([[1, 2]], columns=["a", "a"]))
