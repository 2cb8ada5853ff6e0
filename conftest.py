"""pytest configuration at the repository root: loads the test-tier plugin (``--tier``), see
``mlops_assets_tests/tiers.py``. The fixtures live in ``mlops_assets_tests/conftest.py``."""

import os

pytest_plugins = ("mlops_assets_tests.tiers",)


def pytest_sessionstart(session: object) -> None:
    """Empty the reliability records of an earlier session (once: in the xdist controller or a plain run)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        from mlops_assets_tests import reliability

        reliability.clear()
