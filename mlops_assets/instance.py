"""Preparing a local Dagster instance directory (the embedded default) for the demo and for users."""

from pathlib import Path
from typing import Any

import yaml

#: The instance settings of the repository's ``dagster.yaml`` (a test keeps the two equal).
INSTANCE_CONFIG: dict[str, Any] = {
    "telemetry": {"enabled": False},
    "nux": {"enabled": False},
    "run_retries": {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False},
    "run_monitoring": {
        "enabled": True,
        "start_timeout_seconds": 180,
        "cancel_timeout_seconds": 180,
        "max_runtime_seconds": 3600,
        "poll_interval_seconds": 60,
        "free_slots_after_run_end_seconds": 300,
    },
    "concurrency": {"runs": {"max_concurrent_runs": 2}, "pools": {"default_limit": 1, "granularity": "op"}},
    "sensors": {"use_threads": True, "num_workers": 4},
    "run_coordinator": {
        "module": "dagster.core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {"dequeue_interval_seconds": 1},
    },
}

LOCATION_NAME = "mlops_assets"

#: ``minimum_interval_seconds`` of the sensors that should evaluate on every loop of the Dagster sensor daemon.
#: The daemon starts a loop at most every 5 s (``MIN_INTERVAL_LOOP_TIME`` in ``dagster/_daemon/sensor.py``) and skips
#: a sensor whose last tick *started* less than its minimum interval ago. A tick starts a moment after its loop
#: begins (it waits for one of the daemon's threads), so with an interval of exactly 5 s the next loop finds
#: 4.9 s elapsed and skips the sensor: it then ticks every other loop (measured on the demo: 9.5–10 s between
#: ticks of every such sensor). An interval below the loop's makes every loop evaluate it: one tick per ~5 s.
EVERY_DAEMON_LOOP_S = 1


def ensure_instance(home: Path) -> Path:
    """Create ``home`` with our ``dagster.yaml`` and a ``workspace.yaml`` unless they exist; return ``home``.

    An existing ``dagster.yaml`` is left alone: it may point at a user's own storage.
    """
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(yaml.safe_dump(INSTANCE_CONFIG, sort_keys=False))
    workspace = home / "workspace.yaml"
    if not workspace.exists():
        workspace.write_text(
            yaml.safe_dump(
                {
                    "load_from": [
                        {"python_module": {"module_name": "mlops_assets.definitions", "location_name": LOCATION_NAME}}
                    ]
                },
                sort_keys=False,
            )
        )
    return home
