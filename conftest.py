"""pytest configuration at the repository root: loads the test-tier plugin (``--tier``), see
``mlops_assets_tests/tiers.py``. The fixtures live in ``mlops_assets_tests/conftest.py``."""

pytest_plugins = ("mlops_assets_tests.tiers",)
