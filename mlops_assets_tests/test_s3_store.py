"""The S3 artifact store against a moto S3 server: write-once conditional puts, verified reads."""

import pickle
import threading
from typing import Any

import botocore.exceptions
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlops_assets.storage.artifacts import skops_codec
from mlops_assets.storage.artifacts.s3 import S3ArtifactStore, parse_s3_url
from mlops_assets.storage.artifacts.skops_codec import MODEL_SUFFIX, load_model, store_model
from mlops_assets.storage.artifacts.store import ArtifactIntegrityError, ArtifactRef, ArtifactStore

pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def fitted() -> tuple[Pipeline, pd.DataFrame]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = (x["a"] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(x, y), x.head(20)


@pytest.fixture
def store(s3_bucket) -> S3ArtifactStore:
    bucket, client = s3_bucket
    return S3ArtifactStore(client, bucket, "mlops/artifacts")


def _key(store: S3ArtifactStore, ref: ArtifactRef) -> str:
    return ref.uri.removeprefix(f"s3://{store.bucket}/")


def _keys(client: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def _never_deserialise(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(data: bytes, *, uri: str = "") -> Any:
        raise AssertionError(f"deserialize_model must not be reached for {uri}")

    monkeypatch.setattr(skops_codec, "deserialize_model", fail)


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://bkt/a/b") == ("bkt", "a/b/")
    assert parse_s3_url("s3://bkt/a/b/") == ("bkt", "a/b/")
    assert parse_s3_url("s3://bkt") == ("bkt", "")
    with pytest.raises(ValueError):
        parse_s3_url("/local/path")


def test_round_trip_predicts_identically(store: S3ArtifactStore, fitted, s3_bucket) -> None:
    model, x_new = fitted
    ref = store_model(store, model)
    assert isinstance(store, ArtifactStore)
    assert ref.uri == f"s3://{store.bucket}/mlops/artifacts/{ref.sha256[:2]}/{ref.sha256}{MODEL_SUFFIX}"
    np.testing.assert_array_equal(load_model(store, ref).predict_proba(x_new), model.predict_proba(x_new))
    assert store.exists(ref)
    assert _keys(s3_bucket[1], store.bucket) == [_key(store, ref)]


def test_server_refuses_a_second_conditional_put(store: S3ArtifactStore, s3_bucket) -> None:
    # The store's write-once guarantee rests on the server honouring If-None-Match: prove this server does.
    ref = store.put_bytes(b"first", ".bin")
    with pytest.raises(botocore.exceptions.ClientError) as info:
        s3_bucket[1].put_object(Bucket=store.bucket, Key=_key(store, ref), Body=b"second", IfNoneMatch="*")
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"
    assert store.get_bytes(ref) == b"first"


def test_second_put_of_the_same_bytes_is_idempotent(store: S3ArtifactStore, s3_bucket) -> None:
    first = store.put_bytes(b"same bytes", ".bin")
    second = store.put_bytes(b"same bytes", ".bin")
    assert first == second
    assert _keys(s3_bucket[1], store.bucket) == [_key(store, first)]


def test_concurrent_puts_of_the_same_bytes_agree(store: S3ArtifactStore) -> None:
    refs: list[ArtifactRef] = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            refs.append(store.put_bytes(b"raced" * 1000, ".bin"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(refs)) == 1


def test_put_refuses_to_overwrite_a_tampered_object(store: S3ArtifactStore, s3_bucket) -> None:
    ref = store.put_bytes(b"original", ".bin")
    s3_bucket[1].put_object(Bucket=store.bucket, Key=_key(store, ref), Body=b"tampered")  # unconditional: an attacker
    with pytest.raises(ArtifactIntegrityError, match="refusing to overwrite"):
        store.put_bytes(b"original", ".bin")
    # Left in place for investigation.
    assert s3_bucket[1].get_object(Bucket=store.bucket, Key=_key(store, ref))["Body"].read() == b"tampered"


def test_tampered_model_is_refused_before_deserialisation(
    store: S3ArtifactStore, fitted, s3_bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = fitted
    ref = store_model(store, model)
    data = bytearray(store.get_bytes(ref))
    data[len(data) // 2] ^= 0xFF  # same size, one flipped bit
    s3_bucket[1].put_object(Bucket=store.bucket, Key=_key(store, ref), Body=bytes(data))
    _never_deserialise(monkeypatch)
    with pytest.raises(ArtifactIntegrityError, match="does not match the reference") as info:
        load_model(store, ref)
    assert info.value.expected == ref.sha256


def test_object_of_another_size_is_refused_before_download(store: S3ArtifactStore, s3_bucket) -> None:
    ref = store.put_bytes(b"small", ".bin")
    s3_bucket[1].put_object(Bucket=store.bucket, Key=_key(store, ref), Body=b"x" * 10_000)
    with pytest.raises(ArtifactIntegrityError, match="expected 5 bytes, object has 10000"):
        store.get_bytes(ref)


def test_pickle_under_a_model_key_is_refused_without_unpickling(
    store: S3ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Even with a matching digest (the registry row was written for these bytes), a pickle never gets decoded.
    ref = store.put_bytes(pickle.dumps({"evil": 1}), MODEL_SUFFIX)

    def no_unpickling(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle must never be loaded")

    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    with pytest.raises(ArtifactIntegrityError, match="not a skops archive"):
        load_model(store, ref)


def test_missing_object_is_an_integrity_error(store: S3ArtifactStore) -> None:
    ref = store.put_bytes(b"there", ".bin")
    ghost = ArtifactRef(uri=ref.uri.replace(ref.sha256, "0" * 64), sha256="0" * 64, size=5)
    with pytest.raises(ArtifactIntegrityError, match="missing object"):
        store.get_bytes(ghost)
    assert not store.exists(ghost)


def test_refs_naming_another_digest_or_scheme_are_refused(store: S3ArtifactStore) -> None:
    a = store.put_bytes(b"a", ".bin")
    b = store.put_bytes(b"b", ".bin")
    with pytest.raises(ArtifactIntegrityError, match="does not match the expected digest"):
        store.get_bytes(ArtifactRef(uri=b.uri, sha256=a.sha256, size=a.size))
    with pytest.raises(ArtifactIntegrityError, match="not an s3:// URI"):
        store.get_bytes(ArtifactRef(uri=f"file:///tmp/{a.sha256}.bin", sha256=a.sha256, size=a.size))


def test_store_is_relocatable(store: S3ArtifactStore, s3_bucket) -> None:
    ref = store.put_bytes(b"portable", ".bin")
    client = s3_bucket[1]
    moved = S3ArtifactStore(client, store.bucket, "elsewhere/")
    client.copy_object(
        Bucket=store.bucket, Key=moved.key(ref.sha256, ".bin"), CopySource=f"{store.bucket}/{_key(store, ref)}"
    )
    assert moved.get_bytes(ref) == b"portable"


def test_hmac_key_is_required_and_checked(s3_bucket) -> None:
    bucket, client = s3_bucket
    writer = S3ArtifactStore(client, bucket, "keyed", hmac_key=b"right key")
    ref = writer.put_bytes(b"signed", ".bin")
    assert ref.hmac is not None
    assert writer.get_bytes(ref) == b"signed"
    with pytest.raises(ArtifactIntegrityError, match="HMAC mismatch"):
        S3ArtifactStore(client, bucket, "keyed", hmac_key=b"wrong key").get_bytes(ref)
    # Stripping the HMAC from the ref (a registry row edited by hand) does not downgrade the check.
    with pytest.raises(ArtifactIntegrityError, match="HMAC mismatch"):
        writer.get_bytes(ArtifactRef(uri=ref.uri, sha256=ref.sha256, size=ref.size))
    assert "right key" not in repr(writer)
