"""Labels path at 1M rows (issue 14, point 6): ids matched through factorized codes, no copy when all rows are
labelled; the results equal a per-row reference exactly (values, dtypes, index, column order, record, errors)."""

import math

import numpy as np
import pandas as pd
import pytest

from mlops_assets.ml import labels
from mlops_assets.ml.features import LABEL_COLUMN
from mlops_assets.ml.labels import DATA_FILE_SOURCE, LABEL, MAX_EXAMPLES, ROW_ID, LabelsRecord
from mlops_assets.ml.spec import load_spec

pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def spec():
    return load_spec("synthetic")


# --- per-row references -----------------------------------------------------------------------------------------


def _reference_merge(row_ids, own, files, min_share):
    """merge_labels one id at a time with dicts (ids compared as ``str`` of each value)."""
    ids = [str(v) for v in row_ids]
    current = [math.nan] * len(ids) if own is None else [float(v) for v in pd.Series(own).astype(float)]
    origin = [DATA_FILE_SOURCE if not math.isnan(v) else "" for v in current]
    sources = [DATA_FILE_SOURCE] if any(not math.isnan(v) for v in current) else []
    if files and len(set(ids)) < len(ids):
        raise ValueError("cannot reindex on an axis with duplicate labels")
    position = {rid: k for k, rid in enumerate(ids)}
    changed_ids: dict[str, None] = {}
    unknown_total, unknown_examples, per_file = 0, [], []
    for name, part in files:
        before, before_origin = list(current), list(origin)
        applied = relabelled = changed = unknown = 0
        changed_sources = set()
        for rid, value in zip(part[ROW_ID].tolist(), part[LABEL].astype(float).tolist(), strict=True):
            if rid not in position:
                unknown += 1
                if len(unknown_examples) < MAX_EXAMPLES:
                    unknown_examples.append(rid)
                continue
            k = position[rid]
            applied += 1
            if not math.isnan(before[k]):
                relabelled += 1
                if before[k] != value:
                    changed += 1
                    changed_sources.add(before_origin[k])
                    changed_ids[rid] = None
            current[k] = value
            origin[k] = name
        unknown_total += unknown
        sources.append(name)
        per_file.append(
            {
                "file": name,
                "rows": len(part),
                "applied": applied,
                "unknown_ids": unknown,
                "relabelled": relabelled,
                "changed": changed,
                "changed_sources": sorted(changed_sources),
            }
        )
    n_labelled = sum(not math.isnan(v) for v in current)
    share = n_labelled / len(ids) if ids else 0.0
    record = LabelsRecord(
        rows=len(ids),
        labelled_rows=n_labelled,
        labelled_share=float(share),
        min_labelled_share=float(min_share),
        labelled=bool(ids) and share >= min_share,
        sources=tuple(sources),
        files=tuple(per_file),
        changed_labels=len(changed_ids),
        changed_examples=tuple(list(changed_ids)[:MAX_EXAMPLES]),
        unknown_ids=unknown_total,
        unknown_examples=tuple(unknown_examples),
    )
    frame = pd.DataFrame({ROW_ID: np.array(ids, dtype=object), LABEL: np.array(current, dtype=float)})
    return frame, record


def _reference_labelled(features, labels_frame, spec):
    """labelled_features one row at a time with a dict."""
    given = dict(zip(labels_frame[ROW_ID].tolist(), labels_frame[LABEL].astype(float).tolist(), strict=True))
    if len(given) < len(labels_frame):
        raise ValueError(f"labels of spec {spec.name!r} have duplicate row ids (rule: ids_unique)")
    keep, values = [], []
    for k, rid in enumerate(features[spec.id_column].tolist()):
        value = given.get(str(rid), math.nan)
        if math.isfinite(value):
            if value not in (0.0, 1.0):
                raise ValueError(f"labels of spec {spec.name!r} hold values other than 0/1 (rule: label_in_domain)")
            keep.append(k)
            values.append(value)
    out = features.iloc[keep].reset_index(drop=True)
    out[LABEL_COLUMN] = np.array(values, dtype=float).astype(np.int64)
    out.attrs.update(features.attrs)
    return out


def _labels(ids, values):
    return pd.DataFrame({ROW_ID: np.array(ids, dtype=object), LABEL: np.array(values, dtype=float)})


MERGE_CASES = {
    "int ids, own labels, two files, later wins": (
        pd.Series([3, 1, 2, 10], name="customer_id"),
        pd.Series([1.0, np.nan, 0.0, np.nan]),
        [
            ("a.csv", _labels(["1", "3", "99", "01"], [1.0, 0.0, 1.0, 0.0])),
            ("b.csv", _labels(["3", "1", "2", "10"], [0.0, 0.0, 0.0, 1.0])),
        ],
    ),
    "str ids with leading zeros ('01' is not '1')": (
        pd.Series(["01", "1", "001", "x"], dtype=object),
        None,
        [("l.csv", _labels(["1", "01", "0001", "y", "z"], [1.0, 0.0, 1.0, 1.0, 0.0]))],
    ),
    "a file giving one id twice (last wins)": (
        pd.Series([1, 2]),
        pd.Series([0.0, np.nan]),
        [("d.csv", _labels(["1", "1", "4"], [1.0, 0.0, 1.0]))],
    ),
    "no labels at all": (pd.Series([5, 6, 7]), pd.Series([np.nan] * 3), []),
    "own labels only, pandas NA": (pd.Series(["a", "b"]), pd.Series([1, pd.NA], dtype="Int64"), []),
    "no file labels a row": (pd.Series([1, 2]), None, [("u.csv", _labels(["3", "4"], [1.0, 0.0]))]),
    "an empty file": (pd.Series([1, 2]), pd.Series([1.0, 0.0]), [("e.csv", _labels([], []))]),
    "empty version": (pd.Series([], dtype="int64"), pd.Series([], dtype=float), [("l.csv", _labels(["1"], [1.0]))]),
    "empty version without labels": (pd.Series([], dtype=object), None, []),
    "duplicate row ids, no file": (pd.Series([1, 2, 2]), pd.Series([1.0, np.nan, 0.0]), []),
    "many changes (examples capped)": (
        pd.Series(range(20)),
        pd.Series([1.0] * 20),
        [("c.csv", _labels([str(i) for i in range(20)] + [f"u{i}" for i in range(9)], [0.0] * 20 + [1.0] * 9))],
    ),
}


@pytest.mark.parametrize("case", list(MERGE_CASES))
def test_merge_labels_equals_the_per_row_reference(case):
    row_ids, own, files = MERGE_CASES[case]
    frame, record = labels.merge_labels(row_ids, own, files, min_labelled_share=0.5)
    expected_frame, expected_record = _reference_merge(row_ids, own, files, 0.5)
    pd.testing.assert_frame_equal(frame, expected_frame, check_exact=True)
    assert record == expected_record


def test_merge_labels_refuses_duplicate_row_ids_when_a_file_is_merged_as_before():
    with pytest.raises(ValueError, match=r"^cannot reindex on an axis with duplicate labels$"):
        labels.merge_labels(pd.Series([1, 2, 2]), None, [("l.csv", _labels(["1"], [1.0]))], min_labelled_share=0.5)
    with pytest.raises(ValueError, match=r"^Length of values \(1\) does not match length of index \(2\)$"):
        labels.merge_labels(pd.Series([1, 2]), pd.Series([1.0]), [], min_labelled_share=0.5)


def _features(ids):
    n = len(ids)
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "income": np.arange(n, dtype=float) * 1.5,
            "region": pd.Series([f"r{i % 3}" for i in range(n)], dtype="str"),
            LABEL_COLUMN: np.zeros(n, dtype=np.int64),
            "_split": pd.Series(["train"] * n, dtype="str"),
        },
        index=pd.RangeIndex(10, 10 + n),  # not 0..n-1: the result's index is reset
    )
    frame.attrs["source_file"] = "f.csv"
    return frame


LABELLED_CASES = {
    "int ids, some labelled": (_features([3, 1, 2, 10]), _labels(["1", "10", "01", "7"], [1.0, 0.0, 1.0, 0.0])),
    "str ids, leading zeros": (
        _features(pd.Series(["01", "1", "001"], dtype="str")),
        _labels(["1", "001", "0001"], [1.0, 0.0, 1.0]),
    ),
    "all labelled": (_features([1, 2, 3]), _labels(["3", "2", "1"], [1.0, 0.0, 1.0])),
    "none labelled": (_features([1, 2, 3]), _labels(["1", "2", "3"], [np.nan] * 3)),
    "no labels frame rows": (_features([1, 2]), pd.DataFrame({ROW_ID: pd.Series(dtype=str), LABEL: []})),
    "empty features": (_features(pd.Series([], dtype="int64")), _labels(["1"], [1.0])),
    "empty both": (_features(pd.Series([], dtype="int64")), _labels([], [])),
    "duplicate feature ids": (_features([1, 1, 2]), _labels(["1", "2"], [0.0, 1.0])),
}


@pytest.mark.parametrize("case", list(LABELLED_CASES))
def test_labelled_features_equals_the_per_row_reference(case, spec):
    features, labels_frame = LABELLED_CASES[case]
    before = features.copy(deep=True)
    out = labels.labelled_features(features, labels_frame, spec)
    pd.testing.assert_frame_equal(out, _reference_labelled(features, labels_frame, spec), check_exact=True)
    assert out.attrs == features.attrs
    pd.testing.assert_frame_equal(features, before, check_exact=True)  # the input is never changed


@pytest.mark.parametrize(
    ("labels_frame", "message"),
    [
        (_labels(["1", "2", "1"], [1.0, 0.0, 1.0]), "duplicate row ids"),
        (_labels(["1", "2"], [1.0, 2.0]), "other than 0/1"),
    ],
)
def test_labelled_features_refuses_as_the_reference(labels_frame, message, spec):
    features = _features([1, 2])
    for call in (labels.labelled_features, _reference_labelled):
        with pytest.raises(ValueError, match=message):
            call(features, labels_frame, spec)


def test_all_labelled_shares_the_feature_columns_and_writes_do_not_reach_the_input(spec):
    features = _features([1, 2, 3])
    before = features.copy(deep=True)
    out = labels.labelled_features(features, _labels(["1", "2", "3"], [1.0, 0.0, 1.0]), spec)
    # No copy of the frame: its columns are the features' own data until written (copy-on-write).
    assert np.shares_memory(out["income"].to_numpy(), features["income"].to_numpy())
    out.loc[0, "income"] = -1.0
    out["region"] = "changed"
    pd.testing.assert_frame_equal(features, before, check_exact=True)
    assert out[LABEL_COLUMN].tolist() == [1, 0, 1]
