"""The pure core of served traffic (``mlops_assets.ml.served``): a segment's data file, its log, sampling and skew.

Segments are built here as :func:`mlops_assets.serving.segments.read_segment` returns them (the contract's columns),
from synthetic rows typed by the data schema and scored by a small fitted pipeline, one request per row.
"""

import dataclasses
import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops_assets.demo_data import synthetic
from mlops_assets.ml import served
from mlops_assets.ml import serving_contract as contract
from mlops_assets.ml.features import build_features, encode_label, feature_columns, model_inputs
from mlops_assets.ml.routing import feature_hash_array
from mlops_assets.ml.scoring import LOG_COLUMNS, prediction_ids
from mlops_assets.ml.spec import DatasetSpec, load_spec
from mlops_assets.ml.training import positive_scores
from mlops_assets.ml.validation import coerce_to_schema, read_data_file

pytestmark = pytest.mark.core

SEGMENT_ID = "served-20261201T031500123456Z-0a1b2c3d"


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    """The synthetic spec with ``label.required: false`` (a data version landed from served traffic has no label)."""
    packaged = load_spec("synthetic")
    return dataclasses.replace(packaged, label=dataclasses.replace(packaged.label, required=False))


@pytest.fixture(scope="module")
def typed(spec: DatasetSpec) -> pd.DataFrame:
    raw = synthetic.generate(120, seed=7, start_id=50_000)
    raw.loc[raw.index % 7 == 0, "balance"] = np.nan  # nullable: missing values go through as NaN on both paths
    frame = coerce_to_schema(raw, spec)
    assert frame is not None
    return frame


@pytest.fixture(scope="module")
def pipeline(spec: DatasetSpec, typed: pd.DataFrame) -> Pipeline:
    columns = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), list(spec.numeric_features)),
            ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()), spec.categorical_features),
        ]
    )
    fitted = make_pipeline(columns, LogisticRegression(max_iter=500))
    fitted.fit(model_inputs(typed, spec), encode_label(typed[spec.label.column], spec))
    return fitted


def make_segment(
    typed: pd.DataFrame,
    spec: DatasetSpec,
    arms: list[tuple[int, str, Pipeline]],
    *,
    segment_id: str = SEGMENT_ID,
    rows_per_request: int = 1,
    served_arm: str = "champion",
) -> pd.DataFrame:
    """A segment as the server logs it: requests of ``rows_per_request`` rows, one log row per (row, arm)."""
    fields = served.record_fields(spec)
    inputs = model_inputs(typed, spec).reset_index(drop=True)
    hashes = feature_hash_array(inputs).to_pylist()
    ids = typed[spec.id_column].reset_index(drop=True)
    start = datetime(2026, 12, 1, 3, 15, tzinfo=UTC)
    parts = []
    for first in range(0, len(typed), rows_per_request):
        rows = list(range(first, min(first + rows_per_request, len(typed))))
        request_id = str(ids[rows[0]]) if rows_per_request == 1 else f"req-{first}"
        row_ids = contract.row_ids_for(request_id, len(rows), "int")
        for version, arm, model in arms:
            scores = positive_scores(model, inputs.iloc[rows])
            part = pd.DataFrame(
                {
                    "request_id": request_id,
                    "row_id": np.asarray(row_ids, dtype=np.int64),
                    "data_version": segment_id,
                    "prediction_id": prediction_ids(segment_id, pd.Series(row_ids).astype(str), version).to_pylist(),
                    "model_version": version,
                    "arm": arm,
                    "served": arm == served_arm,
                    "score": scores,
                    "decision": (scores >= 0.5).astype(np.int64),
                    "feature_hash": [hashes[i] for i in rows],
                    "scored_at": pd.Timestamp(start + timedelta(seconds=first)),
                    "latency_ms": 1.0 if arm == served_arm else np.nan,
                }
            )
            for f in fields:
                part[contract.record_column(f)] = typed[f].iloc[rows].to_numpy()
            for f in feature_columns(spec):
                part[contract.feature_column(f)] = inputs[f].iloc[rows].to_numpy()
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def batch_features(segment: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The batch path of the data version landed from ``segment``: data file → schema → build_features."""
    typed = coerce_to_schema(served.data_file_of_segment(segment, spec), spec)
    assert typed is not None
    return build_features(typed, spec)


def test_data_file_of_a_segment_reads_back_as_the_typed_rows_without_the_label(spec, typed, pipeline, tmp_path):
    segment = make_segment(typed, spec, [(1, "champion", pipeline), (2, "challenger", pipeline)])
    frame = served.data_file_of_segment(segment, spec)
    assert list(frame.columns) == [c.name for c in spec.columns if c.name != spec.label.column]
    assert len(frame) == len(typed)  # one row per served row, not per arm
    data = served.data_file_bytes(frame)
    assert data == served.data_file_bytes(served.data_file_of_segment(segment, spec))  # same bytes: same version
    path = tmp_path / f"{SEGMENT_ID}.parquet"
    path.write_bytes(data)
    landed = coerce_to_schema(read_data_file(path, spec), spec)
    assert landed is not None, "the landed data file does not pass the data schema"
    expected = typed.drop(columns=[spec.label.column]).reset_index(drop=True)
    pd.testing.assert_frame_equal(landed[expected.columns], expected, check_dtype=False)
    assert pq.read_table(io.BytesIO(data)).num_rows == len(typed)


def test_a_segment_served_under_another_spec_is_refused_naming_the_columns(spec, typed, pipeline):
    segment = make_segment(typed.head(5), spec, [(1, "champion", pipeline)]).drop(columns=["record.plan"])
    with pytest.raises(ValueError, match=r"record\.plan"):
        served.data_file_of_segment(segment, spec)


def test_served_log_is_the_logged_rows_as_the_batch_log_has_them(spec, typed, pipeline):
    segment = make_segment(typed.head(20), spec, [(1, "champion", pipeline), (2, "challenger", pipeline)])
    key = f"{SEGMENT_ID}__0123456789ab"
    log = served.served_log(segment, key)
    assert list(log.columns) == list(LOG_COLUMNS)
    assert list(log["arm"]) == ["champion"] * 20 + ["challenger"] * 20  # champion rows first, as the batch log
    assert set(log["data_version"]) == {key}
    champion = segment[segment["arm"] == "champion"]
    assert list(log["row_id"][:20]) == [str(i) for i in champion["row_id"]]
    assert list(log["prediction_id"][:20]) == list(champion["prediction_id"])
    np.testing.assert_array_equal(log["score"][:20].to_numpy(), champion["score"].to_numpy())
    assert log["served"].sum() == 20 and str(log["scored_at"].dt.tz) == "UTC"


def test_served_metadata_has_the_batch_keys(spec, typed, pipeline):
    segment = make_segment(typed.head(10), spec, [(3, "champion", pipeline), (4, "challenger", pipeline)])
    meta = served.served_metadata(segment, {"champion_version": "3", "challenger_version": "4", "phase": "shadow"})
    assert meta["champion_version"] == 3 and meta["challenger"] == "v4" and meta["rollout_phase"] == "shadow"
    assert meta["scored_rows"] == 10 and meta["served_by_arm"] == {"champion": 10}
    assert meta["scored_at"] == "2026-12-01T03:15:00+00:00"
    fallback = served.served_metadata(segment, {})
    assert fallback["champion_version"] == 3 and fallback["challenger_version"] == 4


def test_sample_takes_whole_requests_seeded(spec, typed, pipeline):
    segment = make_segment(typed.head(60), spec, [(1, "champion", pipeline)], rows_per_request=3)
    sample = served.sample_requests(segment, 10, seed=5)
    sizes = sample.groupby("request_id").size()
    assert (sizes == 3).all() and len(sample) == 12  # 4 whole requests: the first count reaching 10 rows
    assert sample.equals(served.sample_requests(segment, 10, seed=5))
    assert not sample.equals(served.sample_requests(segment, 10, seed=6))
    assert len(served.sample_requests(segment, 10_000, seed=5)) == 60


def test_skew_passes_when_served_equals_the_batch_path(spec, typed, pipeline):
    segment = make_segment(typed, spec, [(1, "champion", pipeline)], rows_per_request=4)
    features = batch_features(segment, spec)
    result = served.skew(served.sample_requests(segment, 100, seed=1), features, spec, {1: pipeline})
    assert result.passed, result.reading()
    assert result.max_abs_score_diff == 0.0 and result.scores_compared == result.rows == 100
    assert "no skew" in result.reading()


def test_skew_names_the_column_that_differs_with_an_example(spec, typed, pipeline):
    segment = make_segment(typed, spec, [(1, "champion", pipeline)])
    features = batch_features(segment, spec)
    segment["feature.income"] = segment["feature.income"] / 1000  # the server scaled income differently
    segment.loc[3, "feature.region"] = "North"
    result = served.skew(segment, features, spec, {1: pipeline})
    assert not result.passed
    assert [c.column for c in result.differing] == ["income", "region"]
    income = result.differing[0]
    row = typed.reset_index(drop=True).iloc[0]
    assert income.differing_rows == len(typed)
    assert income.row_id == str(row["customer_id"]) and income.batch == row["income"]
    assert income.served == pytest.approx(row["income"] / 1000)
    region = result.differing[1]
    assert region.differing_rows == 1 and region.served == "North"
    assert "income differs" in result.reading() and "rule:" in result.reading()
    # The logged scores were made from the true inputs (make_segment), one row per call; rows whose inputs differ are
    # not re-scored in the served shape, so only the batch-shape rounding of the one-call re-score is left.
    assert result.max_abs_score_diff < 1e-12


def test_skew_finds_scores_that_were_not_what_the_model_gives(spec, typed, pipeline):
    segment = make_segment(typed, spec, [(1, "champion", pipeline)])
    features = batch_features(segment, spec)
    segment.loc[7, "score"] += 1e-9
    result = served.skew(segment, features, spec, {1: pipeline})
    assert not result.passed and not result.differing
    assert result.max_abs_score_diff == pytest.approx(1e-9, rel=1e-3)
    assert result.worst is not None and result.worst["row_id"] == str(segment.loc[7, "row_id"])


class ShapeDependent:
    """A model whose scores move by 1e-12 when rows are scored together: only the served shape reproduces them."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.classes_ = pipeline.classes_
        self.calls = 0

    def predict_proba(self, inputs: pd.DataFrame) -> np.ndarray:
        self.calls += 1
        proba = self.pipeline.predict_proba(inputs)
        shift = 1e-12 if len(inputs) > 1 else 0.0
        return np.column_stack([proba[:, 0] - shift, proba[:, 1] + shift])


def test_skew_rescoring_falls_back_to_the_served_shape_only_where_scores_differ(spec, typed, pipeline):
    model = ShapeDependent(pipeline)
    segment = make_segment(typed.head(40), spec, [(1, "champion", model)])  # type: ignore[list-item]
    features = batch_features(segment, spec)
    model.calls = 0
    result = served.skew(segment, features, spec, {1: model})  # type: ignore[dict-item]
    assert result.passed, result.reading()
    assert model.calls == 1 + 40  # one call for all rows, then one per (one-row) request whose score differed
    exact = ShapeDependent(pipeline)
    exact_segment = make_segment(typed.head(40), spec, [(1, "champion", pipeline)], rows_per_request=40)
    assert served.skew(exact_segment, batch_features(exact_segment, spec), spec, {1: exact}).passed is False
    plain = served.skew(exact_segment, batch_features(exact_segment, spec), spec, {1: pipeline})
    assert plain.passed and plain.scores_compared == 40


def test_skew_refuses_without_the_logged_model(spec, typed, pipeline):
    segment = make_segment(typed.head(3), spec, [(2, "champion", pipeline)])
    with pytest.raises(ValueError, match=r"\[2\]"):
        served.skew(segment, batch_features(segment, spec), spec, {1: pipeline})


def test_segment_ids_of_versions_names_and_what_is_left_to_land():
    key = f"{SEGMENT_ID}__0123456789ab"
    assert served.segment_id_of_version(key) == SEGMENT_ID
    assert served.segment_id_of_version("synthetic_v001__0123456789ab") is None
    other = "served-20261201T031600000000Z-0a1b2c3d"
    landed = served.landed_segment_ids([f"{other}.parquet", "synthetic_v001.csv"], [key])
    assert landed == {SEGMENT_ID, other}
    third = "served-20261201T031700000000Z-ffffffff"
    names = [f"{SEGMENT_ID}.parquet", f"{other}.parquet", f"{third}.parquet", "notes.parquet", f"{third}.arrows"]
    assert served.segments_to_land(names, landed) == [third]
