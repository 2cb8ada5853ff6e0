"""The suite's tier plugin (mlops_assets_tests/tiers.py): every test has a tier, and ``--tier`` selects exactly it."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

REPO = Path(__file__).resolve().parents[1]


def _collect(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "mlops_assets_tests.tiers", "-p", "no:cacheprovider", "-q"),
            *("--collect-only", "-o", "addopts=", "--rootdir", str(folder), str(folder), *args),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_module_without_a_tier_is_a_collection_error(tmp_path: Path) -> None:
    (tmp_path / "test_untiered.py").write_text("def test_x():\n    pass\n")
    result = _collect(tmp_path)
    assert result.returncode != 0
    assert "test modules without a tier marker" in result.stdout + result.stderr
    assert "test_untiered.py" in result.stdout + result.stderr


def test_a_test_runs_in_the_slowest_tier_it_carries(tmp_path: Path) -> None:
    (tmp_path / "test_mixed.py").write_text(
        "import pytest\n\npytestmark = pytest.mark.core\n\n\ndef test_fast():\n    pass\n\n\n"
        "@pytest.mark.e2e\ndef test_slow():\n    pass\n"
    )
    core = _collect(tmp_path, "--tier", "core")
    e2e = _collect(tmp_path, "--tier", "e2e")
    both = _collect(tmp_path, "--tier", "core", "--tier", "e2e")
    assert core.returncode == e2e.returncode == both.returncode == 0, core.stdout + core.stderr
    assert "test_fast" in core.stdout and "test_slow" not in core.stdout
    assert "test_slow" in e2e.stdout and "test_fast" not in e2e.stdout
    assert "test_fast" in both.stdout and "test_slow" in both.stdout
