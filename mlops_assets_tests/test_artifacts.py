"""Tests for the content-addressed artifact store and skops model serialisation."""

import io
import os
import pickle
import stat
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from mlops_assets.storage.artifacts import skops_codec
from mlops_assets.storage.artifacts.skops_codec import (
    MODEL_SUFFIX,
    TRUSTED_TYPES,
    deserialize_model,
    load_model,
    serialize_model,
    store_model,
)
from mlops_assets.storage.artifacts.store import ArtifactIntegrityError, ArtifactRef, ArtifactStore, LocalArtifactStore

pytestmark = pytest.mark.core


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "distance": rng.normal(1000, 300, n),
            "hour": rng.integers(0, 24, n).astype(float),
            "carrier": rng.choice(["AA", "DL", "UA", "WN"], n),
            "origin": rng.choice(["JFK", "LGA", "EWR"], n),
        }
    )
    x.loc[x.index[::17], "distance"] = np.nan
    y = pd.Series(((x["hour"] > 15) ^ (x["carrier"] == "WN")).astype(int), name="delayed")
    return x, y


def _pipeline(seed: int = 0) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), ["distance", "hour"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["carrier", "origin"]),
        ]
    )
    return Pipeline([("pre", pre), ("clf", HistGradientBoostingClassifier(max_iter=25, random_state=seed))])


@pytest.fixture(scope="module")
def fitted() -> tuple[Pipeline, pd.DataFrame]:
    x, y = _frame(400, seed=0)
    return _pipeline().fit(x, y), _frame(50, seed=1)[0]


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def _object_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _overwrite(path: Path, data: bytes) -> None:
    # Stored objects are read-only; an attacker (or a test) with write access to the directory can
    # still change them.
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    path.write_bytes(data)


def _path(store: LocalArtifactStore, ref: ArtifactRef) -> Path:
    return store.root / ref.sha256[:2] / Path(ref.uri).name


def _never_deserialise(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(data: bytes, *, uri: str = "") -> Any:
        raise AssertionError(f"deserialize_model must not be reached for {uri}")

    monkeypatch.setattr(skops_codec, "deserialize_model", fail)


# -- round trip ------------------------------------------------------------------------------------


def test_pipeline_round_trip_predicts_identically(
    store: LocalArtifactStore, fitted: tuple[Pipeline, pd.DataFrame]
) -> None:
    model, x_new = fitted
    ref = store_model(store, model)

    loaded = load_model(store, ref)

    assert isinstance(loaded, Pipeline)
    np.testing.assert_array_equal(loaded.predict_proba(x_new), model.predict_proba(x_new))
    assert ref.uri.endswith(f"/{ref.sha256[:2]}/{ref.sha256}{MODEL_SUFFIX}")
    assert ref.uri.startswith("file://")
    assert ref.size == _path(store, ref).stat().st_size


def test_local_store_satisfies_protocol(store: LocalArtifactStore) -> None:
    assert isinstance(store, ArtifactStore)


def test_ref_dict_round_trip() -> None:
    ref = ArtifactRef(uri="file:///a/b", sha256="0" * 64, size=3, hmac="f" * 64)
    assert ArtifactRef.from_dict(ref.to_dict()) == ref
    # Refs written before HMAC existed have no key.
    assert ArtifactRef.from_dict({"uri": "u", "sha256": "1" * 64, "size": 0}).hmac is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sha256": "XYZ", "size": 1},
        {"sha256": "A" * 64, "size": 1},
        {"sha256": "0" * 64, "size": -1},
        {"sha256": "0" * 64, "size": 1, "hmac": "nothex"},
    ],
)
def test_ref_rejects_malformed_fields(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ArtifactRef(uri="file:///x", **kwargs)


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=4096), suffix=st.sampled_from(["", ".bin", ".skops", ".tar.gz"]))
def test_put_get_round_trip_any_bytes(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        s = LocalArtifactStore(Path(root), hmac_key=b"k")
        ref = s.put_bytes(data, suffix)
        assert s.exists(ref)
        assert s.get_bytes(ref) == data
        assert ref.size == len(data)


# -- write-once ------------------------------------------------------------------------------------


def test_same_bytes_twice_give_same_ref_and_one_file(store: LocalArtifactStore) -> None:
    first = store.put_bytes(b"payload", ".bin")
    path = _path(store, first)
    mtime = path.stat().st_mtime_ns

    second = store.put_bytes(b"payload", ".bin")

    assert second == first
    assert _object_files(store.root) == [path]
    assert path.stat().st_mtime_ns == mtime  # not rewritten
    assert stat.S_IMODE(path.stat().st_mode) == 0o444  # read-only once in place


def test_concurrent_puts_of_same_bytes_leave_one_file(store: LocalArtifactStore) -> None:
    data = os.urandom(256 * 1024)
    barrier = threading.Barrier(8)
    refs: list[ArtifactRef] = []
    errors: list[BaseException] = []

    def put() -> None:
        barrier.wait()
        try:
            refs.append(store.put_bytes(data, ".bin"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(set(refs)) == 1
    assert len(_object_files(store.root)) == 1
    assert store.get_bytes(refs[0]) == data


def test_put_refuses_to_overwrite_a_tampered_object(store: LocalArtifactStore) -> None:
    ref = store.put_bytes(b"original", ".bin")
    _overwrite(_path(store, ref), b"tampered")

    with pytest.raises(ArtifactIntegrityError, match="refusing to overwrite") as info:
        store.put_bytes(b"original", ".bin")

    assert ref.sha256 in str(info.value)
    assert _path(store, ref).read_bytes() == b"tampered"  # evidence kept


def test_crash_during_write_leaves_no_partial_artifact(
    store: LocalArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(fd: int) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk on fire"):
        store.put_bytes(b"never lands", ".bin")
    monkeypatch.undo()

    assert _object_files(store.root) == []  # neither the final name nor a temp file
    ref = store.put_bytes(b"never lands", ".bin")  # and a retry works
    assert store.get_bytes(ref) == b"never lands"


@pytest.mark.parametrize("suffix", ["skops", "/../x", ".a/b", "..", ". "])
def test_put_rejects_suffix_that_is_not_an_extension(store: LocalArtifactStore, suffix: str) -> None:
    with pytest.raises(ValueError, match="suffix"):
        store.put_bytes(b"x", suffix)


# -- tampering -------------------------------------------------------------------------------------


def test_flipped_bit_is_caught_before_deserialisation(
    store: LocalArtifactStore, fitted: tuple[Pipeline, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = store_model(store, fitted[0])
    path = _path(store, ref)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    _overwrite(path, bytes(data))
    _never_deserialise(monkeypatch)

    with pytest.raises(ArtifactIntegrityError) as info:
        load_model(store, ref)

    message = str(info.value)
    assert ref.uri in message and ref.sha256 in message
    assert info.value.actual is not None and info.value.actual in message
    assert info.value.expected == ref.sha256


def test_swapped_file_is_caught(store: LocalArtifactStore, fitted: tuple[Pipeline, pd.DataFrame]) -> None:
    x, y = _frame(200, seed=3)
    ref_a = store_model(store, fitted[0])
    ref_b = store_model(store, _pipeline(seed=1).fit(x, y))
    assert ref_a.sha256 != ref_b.sha256
    # A valid skops archive of another model, under A's key.
    _overwrite(_path(store, ref_a), _path(store, ref_b).read_bytes())

    with pytest.raises(ArtifactIntegrityError, match=f"expected sha256 {ref_a.sha256}.*actual sha256 {ref_b.sha256}"):
        load_model(store, ref_a)


def test_missing_file_is_an_integrity_error(store: LocalArtifactStore) -> None:
    ref = store.put_bytes(b"gone", ".bin")
    path = _path(store, ref)
    path.unlink()

    assert not store.exists(ref)
    with pytest.raises(ArtifactIntegrityError, match="missing file"):
        store.get_bytes(ref)


def test_ref_whose_uri_names_another_digest_is_refused(store: LocalArtifactStore) -> None:
    ref_a = store.put_bytes(b"a", ".bin")
    ref_b = store.put_bytes(b"b", ".bin")
    mixed = ArtifactRef(uri=ref_b.uri, sha256=ref_a.sha256, size=ref_a.size)

    with pytest.raises(ArtifactIntegrityError, match="does not match the expected digest"):
        store.get_bytes(mixed)


def test_store_is_relocatable(tmp_path: Path) -> None:
    old = LocalArtifactStore(tmp_path / "old")
    ref = old.put_bytes(b"portable", ".bin")
    (tmp_path / "old").rename(tmp_path / "new")

    assert LocalArtifactStore(tmp_path / "new").get_bytes(ref) == b"portable"


# -- not skops / untrusted types -------------------------------------------------------------------


def _touch_marker(path: str) -> None:
    Path(path).write_text("unpickled!")


class _Exploit:
    """Pickles to a call of _touch_marker: unpickling it creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_touch_marker, (str(self.marker),))


def test_exploit_payload_really_runs_when_unpickled(tmp_path: Path) -> None:
    # Control: proves the payload used below is live, so its marker staying absent means something.
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_Exploit(marker)))
    assert marker.exists()


def test_pickle_under_a_model_key_is_refused_and_never_unpickled(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    ref = store.put_bytes(payload, MODEL_SUFFIX)  # digest is honest: only the format is wrong

    def no_unpickling(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle must never be used")

    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    with pytest.raises(ArtifactIntegrityError, match="not a skops archive") as info:
        load_model(store, ref)

    assert ref.uri in str(info.value)
    assert not marker.exists()


def test_pickle_swapped_over_a_model_is_refused_and_never_unpickled(
    store: LocalArtifactStore, fitted: tuple[Pipeline, pd.DataFrame], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    ref = store_model(store, fitted[0])
    _overwrite(_path(store, ref), pickle.dumps(_Exploit(marker)))

    with pytest.raises(ArtifactIntegrityError, match="expected sha256"):
        load_model(store, ref)
    # Even if the digest check were bypassed (forged ref), the format check refuses it.
    with pytest.raises(ArtifactIntegrityError, match="not a skops archive"):
        deserialize_model(_path(store, ref).read_bytes(), uri=ref.uri)
    assert not marker.exists()


def test_zip_without_skops_schema_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.pkl", pickle.dumps({"a": 1}))

    with pytest.raises(ArtifactIntegrityError, match=r"no schema\.json"):
        deserialize_model(buffer.getvalue(), uri="file:///x.skops")


def test_corrupt_zip_is_refused() -> None:
    with pytest.raises(ArtifactIntegrityError, match="not a valid skops archive"):
        deserialize_model(b"PK\x03\x04" + b"\x00" * 64, uri="file:///x.skops")


def test_untrusted_type_is_refused_and_named(store: LocalArtifactStore, tmp_path: Path) -> None:
    # A transformer whose function is os.system: loading it would hand an attacker a shell call.
    evil = sio.dumps(FunctionTransformer(func=os.system))
    ref = store.put_bytes(evil, MODEL_SUFFIX)

    with pytest.raises(ArtifactIntegrityError, match="untrusted types") as info:
        load_model(store, ref)

    assert f"{os.system.__module__}.system" in str(info.value)
    assert ref.uri in str(info.value)


def test_serialize_model_refuses_what_load_would_refuse() -> None:
    with pytest.raises(ValueError, match="outside TRUSTED_TYPES"):
        serialize_model(FunctionTransformer(func=os.system))


def test_trusted_types_cover_the_pipeline(fitted: tuple[Pipeline, pd.DataFrame]) -> None:
    found = skops_codec.untrusted_types(serialize_model(fitted[0]))
    assert found  # skops 0.16 flags TreePredictor and numpy.dtype; we trust them explicitly
    assert set(found) <= TRUSTED_TYPES


# -- HMAC ------------------------------------------------------------------------------------------


def test_hmac_round_trip_and_mismatch(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    writer = LocalArtifactStore(root, hmac_key=b"right key")
    ref = writer.put_bytes(b"signed", ".bin")
    assert ref.hmac is not None
    assert writer.get_bytes(ref) == b"signed"

    with pytest.raises(ArtifactIntegrityError, match="HMAC mismatch"):
        LocalArtifactStore(root, hmac_key=b"wrong key").get_bytes(ref)
    with pytest.raises(ArtifactIntegrityError, match="HMAC mismatch"):
        writer.get_bytes(ArtifactRef(uri=ref.uri, sha256=ref.sha256, size=ref.size, hmac="0" * 64))
    # Stripping the HMAC from the ref must not downgrade a keyed store to a bare digest check.
    with pytest.raises(ArtifactIntegrityError, match="HMAC mismatch"):
        writer.get_bytes(ArtifactRef(uri=ref.uri, sha256=ref.sha256, size=ref.size))


def test_hmac_detects_rewritten_object_with_matching_digest(tmp_path: Path) -> None:
    # An attacker who can write both the store and the registry can make digest and size agree with
    # their bytes; only the key holder can produce the HMAC.
    root = tmp_path / "artifacts"
    store = LocalArtifactStore(root, hmac_key=b"secret")
    forged = LocalArtifactStore(root).put_bytes(b"attacker bytes", ".bin")

    with pytest.raises(ArtifactIntegrityError, match="HMAC mismatch"):
        store.get_bytes(forged)


def test_integrity_error_survives_pickling() -> None:
    # Dagster's multiprocess executor ships exceptions between processes.
    error = ArtifactIntegrityError("boom", uri="file:///x", expected="a", actual="b")
    clone = pickle.loads(pickle.dumps(error))
    assert (str(clone), clone.uri, clone.expected, clone.actual) == ("boom", "file:///x", "a", "b")


def test_repr_never_shows_the_key(tmp_path: Path) -> None:
    assert "topsecret" not in repr(LocalArtifactStore(tmp_path, hmac_key=b"topsecret"))
