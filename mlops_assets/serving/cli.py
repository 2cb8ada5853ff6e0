"""``mlops-serve``: the online inference server on the model registry (Open Inference Protocol v2 REST).

::

    mlops-serve [--model NAME ...] [--spec PATH] [--host 127.0.0.1] [--port 8080] [--workers 1]
                [--refresh-seconds 1] [--segment-max-rows N] [--segment-max-age-seconds S]
                [--flush-interval-seconds S] [--wal-dir DIR] [--threads 1]

Models: every model the code location declares (:func:`mlops_assets.components.declared_models`: the
``defs/models/*/defs.yaml`` components, or the one ``MLOPS_SPEC`` model), or the ``--model`` ones; ``--spec``
replaces the spec of the single ``--model``. Stores: :func:`mlops_assets.environments.serving_stores` — the same
registry, artifacts and ``serving_log`` zone as the code location's runs (``MLOPS_ENV``, ``MLOPS_DATA_DIR`` /
``DAGSTER_HOME``; after the demo: ``DAGSTER_HOME=.dagster_home/flights mlops-serve --model flights``). Closed
prediction-log segments go to ``serving_log.at(<model>)``; the open segment's write-ahead file is under
``--wal-dir`` (default ``<data dir>/serving-wal``; in production a volume local to the pod, kept across restarts of
the pod: the next start closes what a killed server left there). A served version's gate evidence must pass the
code location's model gates (:data:`mlops_assets.gates.MODEL_GATE_NAMES`).

``--workers`` > 1 runs uvicorn worker processes, each building the app from the options passed in the
``MLOPS_SERVE_CONFIG`` environment variable (:func:`worker_app`), each with its own segments (its worker tag in their
ids) and write-ahead folder; Prometheus metrics are aggregated over them in a temporary
``PROMETHEUS_MULTIPROC_DIR``. Binds 127.0.0.1 unless told otherwise. Exit codes: 0 after a clean shutdown
(SIGTERM/SIGINT), 2 on a bad option or configuration.
"""

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

#: The environment variable carrying the options to worker processes (JSON, :func:`worker_app`).
CONFIG_ENV = "MLOPS_SERVE_CONFIG"

LOG = logging.getLogger("mlops_assets.serving")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops-serve",
        description="Online inference on the model registry: champion/challenger routing, rollouts and a "
        "prediction log that lands as data versions (Open Inference Protocol v2 REST).",
    )
    parser.add_argument("--model", action="append", default=[], help="a model to serve (repeat); default: all")
    parser.add_argument("--spec", help="the dataset spec (YAML path or packaged name) of the single --model")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--refresh-seconds", type=float, default=1.0, help="registry poll interval (default 1)")
    parser.add_argument("--segment-max-rows", type=int, default=100_000, help="log rows per segment (100000)")
    parser.add_argument(
        "--segment-max-age-seconds",
        type=float,
        default=300.0,
        help="segment age limit (300), applied once a segment holds the spec's policy.data.min_rows served rows",
    )
    parser.add_argument(
        "--flush-interval-seconds", type=float, default=0.05, help="write-ahead flush interval (default 0.05)"
    )
    parser.add_argument("--wal-dir", help="write-ahead folder root (default <data dir>/serving-wal)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="native threads (OpenMP/BLAS) per worker for inference (default 1: a request of a few rows gains "
        "nothing from threads; measured on a shared 2-core machine, a one-row HistGradientBoosting prediction took "
        "6.7 ms with one thread against 13.9 ms with the default under load, 5.5 ms either way when idle)",
    )
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The worker options (JSON-serialisable) of parsed arguments; the model list resolved now."""
    from mlops_assets.components import declared_models
    from mlops_assets.environments import default_data_dir
    from mlops_assets.model import MLModel

    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    if args.refresh_seconds <= 0 or args.flush_interval_seconds <= 0 or args.segment_max_age_seconds <= 0:
        raise ValueError("--refresh-seconds, --flush-interval-seconds and --segment-max-age-seconds must be > 0")
    if args.segment_max_rows < 1:
        raise ValueError("--segment-max-rows must be at least 1")
    if args.threads < 1:
        raise ValueError("--threads must be at least 1")
    if args.spec:
        if len(args.model) != 1:
            raise ValueError("--spec replaces the spec of exactly one --model")
        models = [MLModel.from_spec(args.spec, name=args.model[0])]
    else:
        declared = {m.name: m for m in declared_models()}
        unknown = [name for name in args.model if name not in declared]
        if unknown:
            raise ValueError(
                f"unknown model(s) {', '.join(unknown)}: declared are {', '.join(sorted(declared)) or 'none'} "
                "(or give --spec)"
            )
        models = [declared[name] for name in args.model] if args.model else list(declared.values())
    if not models:
        raise ValueError("no model to serve: none is declared")
    for model in models:
        model.spec()  # fail now, naming the file, not in a worker
    spec_sources = [m.spec_source if isinstance(m.spec_source, str) else dict(m.spec_source) for m in models]
    wal_dir = Path(args.wal_dir) if args.wal_dir else default_data_dir() / "serving-wal"
    return {
        "models": [
            {"name": m.name, "spec": source, "declared_in": m.declared_in}
            for m, source in zip(models, spec_sources, strict=True)
        ],
        "wal_root": str(wal_dir.resolve()),
        "refresh_seconds": args.refresh_seconds,
        "segment_max_rows": args.segment_max_rows,
        "segment_max_age_seconds": args.segment_max_age_seconds,
        "flush_interval_seconds": args.flush_interval_seconds,
        "threads": args.threads,
    }


def build_app(options: dict[str, Any]) -> Starlette:
    """The app for ``options`` (:func:`_options`), on freshly opened stores (closed at the app's shutdown)."""
    from threadpoolctl import threadpool_limits

    from mlops_assets.environments import serving_stores
    from mlops_assets.gates import MODEL_GATE_NAMES
    from mlops_assets.model import MLModel
    from mlops_assets.serving.app import AppConfig, ServedModelConfig, create_app

    # Process-wide (kept for the worker's life): the native thread pools of inference.
    threadpool_limits(limits=int(options.get("threads", 1)))
    stores = serving_stores()
    try:
        models = [
            MLModel(name=m["name"], spec_source=m["spec"], declared_in=m.get("declared_in", "<mlops-serve>"))
            for m in options["models"]
        ]
        config = AppConfig(
            models=[ServedModelConfig(m.name, m.spec(), stores.serving_log.at(m.name)) for m in models],
            registry=stores.registry,
            artifacts=stores.artifacts,
            required_gates=MODEL_GATE_NAMES,
            wal_root=Path(options["wal_root"]),
            refresh_seconds=float(options["refresh_seconds"]),
            segment_max_rows=int(options["segment_max_rows"]),
            segment_max_age_seconds=float(options["segment_max_age_seconds"]),
            flush_interval_seconds=float(options["flush_interval_seconds"]),
            on_shutdown=stores.close,
        )
        return create_app(config)
    except BaseException:
        stores.close()
        raise


def worker_app() -> Starlette:
    """The uvicorn factory of a worker process (``mlops_assets.serving.cli:worker_app``): options from
    :data:`CONFIG_ENV`.

    Raises:
        RuntimeError: the variable is not set (the factory is only for ``mlops-serve --workers N``).
    """
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"{CONFIG_ENV} is not set: start workers with `mlops-serve --workers N`")
    return build_app(json.loads(text))


def recover_leftovers(options: dict[str, Any]) -> dict[str, list[str]]:
    """Close every write-ahead file a killed server left (every model, every worker folder) into its segment zone.

    Returns:
        The segment ids closed per model.
    """
    from mlops_assets.environments import serving_stores
    from mlops_assets.serving.app import recover_wal_tree

    stores = serving_stores()
    try:
        return {
            m["name"]: recover_wal_tree(Path(options["wal_root"]), m["name"], stores.serving_log.at(m["name"]))
            for m in options["models"]
        }
    finally:
        stores.close()


def _exit_cleanly_on_stop_signals() -> None:
    """Make SIGTERM/SIGINT end ``main`` with 0 after uvicorn's graceful shutdown.

    uvicorn captures both signals while it serves and re-raises the captured one when it has shut down (lifespan
    shutdown done: the prediction log closed), under the handler that was installed before it started. With this
    no-op handler installed, that re-raise returns and ``main`` exits 0 instead of dying of the signal.
    """

    def stopped(signum: int, frame: object) -> None:
        LOG.info("mlops-serve: stopped by signal %d after a clean shutdown", signum)

    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mlops-serve`` (see the module docstring)."""
    import uvicorn

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        options = _options(args)
        recovered = recover_leftovers(options)
    except (ValueError, OSError) as exc:
        print(f"mlops-serve: {exc}", file=sys.stderr)
        return 2
    for name, ids in recovered.items():
        if ids:
            LOG.info("%s: closed %d segment(s) a previous server left open: %s", name, len(ids), ", ".join(ids))
    names = ", ".join(m["name"] for m in options["models"])
    LOG.info(
        "mlops-serve: serving %s on http://%s:%d (%d worker(s)); write-ahead files under %s",
        names,
        args.host,
        args.port,
        args.workers,
        options["wal_root"],
    )
    common: dict[str, Any] = {"host": args.host, "port": args.port, "access_log": False, "log_level": "info"}
    _exit_cleanly_on_stop_signals()
    if args.workers == 1:
        try:
            app = build_app(options)
        except (ValueError, OSError) as exc:
            print(f"mlops-serve: {exc}", file=sys.stderr)
            return 2
        uvicorn.run(app, **common)
        return 0
    metrics_dir = tempfile.mkdtemp(prefix="mlops-serve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[CONFIG_ENV] = json.dumps(options)
    try:
        uvicorn.run("mlops_assets.serving.cli:worker_app", factory=True, workers=args.workers, **common)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
