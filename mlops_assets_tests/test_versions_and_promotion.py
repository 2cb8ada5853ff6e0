"""Pure core: data version keys and the fail-closed promotion decision."""

import pytest

from mlops_assets.ml.promotion import GateStatus, decide
from mlops_assets.ml.versions import digest_of_key, file_digest, is_landable, safe_stem, stem_of_key, version_key

pytestmark = pytest.mark.core


def test_version_key_is_name_plus_content_digest(tmp_path):
    f = tmp_path / "flights 2013/03.csv"
    f.parent.mkdir()
    f.write_bytes(b"a,b\n1,2\n")
    digest = file_digest(f)
    key = version_key(f.name, digest)
    assert key == f"03__{digest[:12]}"
    assert digest_of_key(key) == digest[:12]
    assert stem_of_key(key) == "03"


def test_version_key_sanitises_unsafe_characters():
    assert safe_stem("my data [v1], final.csv") == "my-data-v1-final"
    assert version_key("x.csv", "ab" * 32).startswith("x__abababab")


@pytest.mark.parametrize("bad", ["nodigest", "x__123", "__abcdefabcdef", "x__abcdefabcdefab"])
def test_malformed_keys_are_rejected(bad):
    with pytest.raises(ValueError):
        digest_of_key(bad)


def test_version_key_refuses_non_hex_digest():
    with pytest.raises(ValueError):
        version_key("x.csv", "not-a-digest")


@pytest.mark.parametrize(
    ("name", "landable"),
    [
        ("a.csv", True),
        ("a.parquet", True),
        ("a.PQ", True),
        (".a.csv.part", False),
        ("_tmp.csv", False),
        ("a.json", False),
        ("a.csv.tmp", False),
    ],
)
def test_only_finished_data_files_are_landable(name, landable):
    assert is_landable(name) is landable


def _gates(*statuses):
    return [GateStatus(f"g{i}", s) for i, s in enumerate(statuses)]


def test_promotes_when_every_gate_passed_and_production_unchanged():
    d = decide(_gates("passed", "passed"), compared_with_production=1, production_now=1, candidate_version=2)
    assert d.promote


@pytest.mark.parametrize("status", ["failed", "missing", "stale"])
def test_any_gate_not_passed_blocks(status):
    d = decide(_gates("passed", status), compared_with_production=None, production_now=None, candidate_version=1)
    assert not d.promote
    assert any(status in r and "g1" in r for r in d.reasons)


def test_no_gates_fails_closed():
    assert not decide([], compared_with_production=None, production_now=None, candidate_version=1).promote


def test_production_changed_since_evaluation_blocks():
    d = decide(_gates("passed"), compared_with_production=1, production_now=3, candidate_version=2)
    assert not d.promote
    assert "re-evaluate" in d.reasons[0]


def test_first_model_is_promoted_when_nothing_in_production():
    assert decide(_gates("passed"), compared_with_production=None, production_now=None, candidate_version=1).promote
