"""The one JSON codec (mlops_assets.ml.json_codec): standard JSON only, one NaN/infinity convention, everywhere."""

import enum
import json
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlops_assets.ml import json_codec
from mlops_assets.ml.backlog import PerformanceBacklog
from mlops_assets.ml.triggers import evidence_json
from mlops_assets.resources import FrameIOManager, _frame_bytes, stored_asset_path
from mlops_assets.storage.artifacts.store import ArtifactRef
from mlops_assets.storage.registry import Lineage, ModelRegistry
from mlops_assets.storage.registry.records import dumps as registry_dumps
from mlops_assets.storage.registry.records import loads as registry_loads

pytestmark = pytest.mark.wiring


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"not standard JSON: {token}")


def strict_loads(text: str | bytes) -> Any:
    """What a standard JSON reader (PostgreSQL jsonb, JSON.parse) accepts: no NaN/Infinity tokens."""
    return json.loads(text, parse_constant=_refuse_constant)


class Colour(enum.Enum):
    RED = "red"


def _messy() -> dict[str, Any]:
    return {
        "nan": float("nan"),
        "inf": math.inf,
        "-inf": -math.inf,
        "np_nan": np.float64("nan"),
        "np_inf": np.float32("inf"),
        "np_int": np.int64(7),
        "np_float": np.float32(0.5),
        "np_bool": np.bool_(False),
        "array": np.array([1.0, np.nan, -np.inf, 2.5]),
        "int_array": np.arange(3, dtype=np.int32),
        "pd_na": pd.NA,
        "pd_nat": pd.NaT,
        "timestamp": pd.Timestamp("2024-03-01T12:30:00Z"),
        "datetime": datetime(2024, 3, 1, 12, 30, tzinfo=UTC),
        "date": date(2024, 3, 1),
        "datetime64": np.datetime64("2024-03-01T12:30:00.123456789"),
        "enum": Colour.RED,
        "tuple": (1, (2, math.nan)),
        "set": {3, 1, 2},
        "path": Path("a/b.json"),
        "nested": {"deeper": [{"psi": math.inf, "ok": 1.25}, [np.float64("-inf"), None]]},
    }


EXPECTED = {
    "nan": None,
    "inf": None,
    "-inf": None,
    "np_nan": None,
    "np_inf": None,
    "np_int": 7,
    "np_float": 0.5,
    "np_bool": False,
    "array": [1.0, None, None, 2.5],
    "int_array": [0, 1, 2],
    "pd_na": None,
    "pd_nat": None,
    "timestamp": "2024-03-01T12:30:00+00:00",
    "datetime": "2024-03-01T12:30:00+00:00",
    "date": "2024-03-01",
    "datetime64": "2024-03-01T12:30:00.123456789",
    "enum": "red",
    "tuple": [1, [2, None]],
    "set": [1, 2, 3],
    "path": "a/b.json",
    "nested": {"deeper": [{"ok": 1.25, "psi": None}, [None, None]]},
}


def test_to_jsonable_one_convention_for_nan_inf_numpy_pandas_and_time() -> None:
    assert json_codec.to_jsonable(_messy()) == EXPECTED


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan"), np.float32("-inf"), pd.NA])
def test_non_finite_and_missing_scalars_are_null(value: Any) -> None:
    assert json_codec.dumps(value) == "null"
    assert json_codec.dumps([value, {"k": value}]) == '[null, {"k": null}]'


def test_dumps_is_standard_json_that_a_strict_reader_accepts() -> None:
    text = json_codec.dumps(_messy(), sort_keys=True)
    assert "NaN" not in text and "Infinity" not in text
    assert strict_loads(text) == EXPECTED
    with pytest.raises(ValueError, match="not standard JSON"):
        strict_loads(json.dumps({"x": math.inf}))  # what the old writers produced


def test_dumps_keeps_the_formatting_options() -> None:
    plain = {"b": [1, 2], "a": {"y": 1.5, "x": None}}
    for kw in ({"sort_keys": True}, {"indent": 1, "sort_keys": True}, {"separators": (",", ":"), "sort_keys": True}):
        assert json_codec.dumps(plain, **kw) == json.dumps(plain, **kw)
    # int keys are sorted as numbers before being written as strings, exactly as json does
    assert json_codec.dumps({10: 1, 9: 2}, sort_keys=True) == json.dumps({10: 1, 9: 2}, sort_keys=True)
    assert json_codec.dumps({np.int64(2): "a", "x": 1}) == '{"2": "a", "x": 1}'
    assert json_codec.dumps("é", ensure_ascii=False) == '"é"'
    # allow_nan cannot be switched back on
    assert json_codec.dumps(math.nan, allow_nan=True) == "null"


def test_unknown_types_need_a_default() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    with pytest.raises(TypeError, match="Opaque is not JSON serialisable"):
        json_codec.dumps({"x": Opaque()})
    assert json_codec.dumps({"x": Opaque()}, default=str) == '{"x": "opaque!"}'


def test_loads_reads_legacy_tokens_as_null() -> None:
    legacy = '{"auc": NaN, "psi": Infinity, "low": -Infinity, "ok": 0.5}'
    assert json_codec.loads(legacy) == {"auc": None, "psi": None, "low": None, "ok": 0.5}
    assert json_codec.loads(b'[1, "a"]') == [1, "a"]
    with pytest.raises(json_codec.JSONDecodeError):
        json_codec.loads("{not json")


def test_roundtrip_is_stable() -> None:
    text = json_codec.dumps(_messy(), sort_keys=True, separators=(",", ":"))
    assert json_codec.dumps(json_codec.loads(text), sort_keys=True, separators=(",", ":")) == text


# -- the writers that use it ------------------------------------------------------------------------------------------


def test_frame_io_manager_writes_standard_json(tmp_path: Path) -> None:
    manager = FrameIOManager(base_dir=str(tmp_path))
    record = {
        "roc_auc": math.nan,
        "psi": np.float64("inf"),
        "n": np.int64(3),
        "at": pd.Timestamp("2024-01-01", tz="UTC"),
    }
    manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey(["m", "report"])), record)
    target = stored_asset_path(str(tmp_path), ["m", "report"], None)
    text = target.with_suffix(".json").read_text()
    assert text.startswith("{\n ")  # indent=1, as before
    expected = {"at": "2024-01-01T00:00:00+00:00", "n": 3, "psi": None, "roc_auc": None}
    assert strict_loads(text) == expected
    assert manager.load_value(dg.AssetKey(["m", "report"]), None) == expected


def test_s3_io_manager_body_is_standard_json() -> None:
    suffix, body, content_type = _frame_bytes({"x": [math.inf, -math.inf, math.nan]})
    assert (suffix, content_type) == (".json", "application/json")
    assert strict_loads(body) == {"x": [None, None, None]}


def test_registry_columns_are_standard_json() -> None:
    text = registry_dumps({"metric": math.nan, "gates": [{"observed": -math.inf}], "when": datetime(2024, 1, 1)})
    assert strict_loads(text) == {"gates": [{"observed": None}], "metric": None, "when": "2024-01-01T00:00:00"}
    assert registry_loads('{"metric": NaN}') == {"metric": None}  # rows written before the codec


def test_sensor_cursors_are_standard_json() -> None:
    backlog = PerformanceBacklog(mark=12, pending={"metric": "roc_auc", "observed": math.nan, "limit": math.inf})
    cursor = backlog.to_cursor()
    assert strict_loads(cursor) == {
        "pending": {"limit": None, "metric": "roc_auc", "observed": None},
        "performance": 12,
    }
    # a cursor written before the codec still reads
    legacy = PerformanceBacklog.from_cursor('{"performance": 12, "pending": {"observed": NaN}}')
    assert legacy == PerformanceBacklog(mark=12, pending={"observed": None})


def test_evidence_tag_is_standard_json_at_any_depth() -> None:
    text = evidence_json({"share": 0.123456789, "nested": {"psi": math.inf}, "n": np.int64(4)})
    assert strict_loads(text) == {"share": 0.1235, "nested": {"psi": None}, "n": 4}


# -- PostgreSQL: the registry's JSON columns are valid jsonb ---------------------------------------------------------


def test_registry_evidence_with_infinity_is_valid_jsonb_on_postgresql(postgres_registry_url: str) -> None:
    # Before the codec the evidence column held ``{"psi": Infinity, ...}``: the cast to jsonb (any SQL that reads the
    # evidence as JSON) failed with 'Token "Infinity" is invalid'.
    evidence = {
        "psi": math.inf,
        "roc_auc": np.float64("nan"),
        "gates": [{"check": "model_evaluation:metric_above_floor", "observed": -math.inf, "passed": np.bool_(True)}],
        "at": pd.Timestamp("2024-05-01T08:00:00Z"),
    }
    ref = ArtifactRef(uri="file:///artifacts/ab/abc.skops", sha256="ab" * 32, size=123, hmac=None)
    lineage = Lineage(
        data_versions=("2024-05",), run_id="run-1", package_version="v1", git_sha="abc", spec_fingerprint="fp"
    )
    with ModelRegistry(postgres_registry_url) as registry:
        registry.register_version("codec_model", ref, lineage, {"C": np.float64(1.0)}, {"roc_auc": math.nan})
        registry.transition("codec_model", 1, "Staging", actor="tester", reason="codec", evidence=evidence)
        with registry.engine.connect() as conn:
            stored = conn.execute(
                sa.text(
                    "SELECT evidence::jsonb FROM stage_transitions"
                    " WHERE model_name = 'codec_model' AND to_stage = 'Staging'"
                )
            ).scalar_one()
            metrics = conn.execute(
                sa.text("SELECT metrics::jsonb FROM model_versions WHERE model_name = 'codec_model'")
            ).scalar_one()
        expected = {
            "psi": None,
            "roc_auc": None,
            "gates": [{"check": "model_evaluation:metric_above_floor", "observed": None, "passed": True}],
            "at": "2024-05-01T08:00:00+00:00",
        }
        assert stored == expected
        assert metrics == {"roc_auc": None}
        assert registry.transitions("codec_model", 1)[-1].evidence == expected
        assert registry.get_version("codec_model", 1).metrics == {"roc_auc": None}
