"""The ``mlops-serve`` ASGI app (mlops_assets.serving.app) in process, on an in-memory registry with no champion.

A model with nothing in Production is not ready and refuses inference with 503 saying so; health, metadata and
metrics still answer, and nothing is logged.
"""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops_assets.ml.spec import load_spec
from mlops_assets.serving.app import AppConfig, ServedModelConfig, create_app, status_of
from mlops_assets_tests.test_serving_deployment import GATES, FakeRegistry

pytestmark = pytest.mark.core


class Sink:
    def __init__(self) -> None:
        self.names: list[str] = []

    def put(self, name: str, source: Path) -> str:
        self.names.append(name)
        return name


def _app(tmp_path: Path, registry: Any, sink: Sink) -> Any:
    config = AppConfig(
        models=[ServedModelConfig("synthetic", load_spec("synthetic"), sink)],
        registry=registry,
        artifacts=None,  # type: ignore[arg-type]
        required_gates=GATES,
        wal_root=tmp_path / "wal",
        refresh_seconds=0.05,
    )
    return create_app(config)


def _serve(app: Any, body: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    """Run ``body`` against ``app`` inside its lifespan (start-up and shutdown run as under uvicorn)."""

    async def run() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://mlops-serve") as client:
                await body(client)

    asyncio.run(run())


def test_a_model_without_a_champion_is_not_ready_and_refuses_inference_saying_so(tmp_path: Path) -> None:
    sink = Sink()

    async def body(client: httpx.AsyncClient) -> None:
        assert (await client.get("/v2/health/live")).status_code == 200
        ready = await client.get("/v2/health/ready")
        assert ready.status_code == 503 and "synthetic" in ready.json()["models"]
        assert (await client.get("/v2/models/synthetic/ready")).status_code == 503
        refused = await client.post("/v2/models/synthetic/records", json={"records": [{"age": 30}]})
        assert refused.status_code == 503 and "no verified champion" in refused.json()["error"]
        meta = (await client.get("/v2/models/synthetic")).json()
        assert meta["versions"] == [] and meta["parameters"]["champion"] is None
        assert (await client.get("/v2/models/other")).status_code == 404
        metrics = (await client.get("/metrics")).text
        assert 'mlops_request_errors_total{code="503",endpoint="records",model="synthetic"} 1.0' in metrics

    _serve(_app(tmp_path, FakeRegistry(), sink), body)
    assert sink.names == []


def test_registry_errors_are_exposed_as_a_metric(tmp_path: Path) -> None:
    registry = FakeRegistry(down=True)

    async def body(client: httpx.AsyncClient) -> None:
        text = (await client.get("/metrics")).text
        line = next(x for x in text.splitlines() if x.startswith('mlops_registry_errors_total{model="synthetic"}'))
        assert float(line.split()[-1]) >= 1.0  # the start-up poll failed; the server still answers

    _serve(_app(tmp_path, registry, Sink()), body)


def test_age_waits_for_the_spec_row_floor_of_served_rows(tmp_path: Path) -> None:
    # A segment lands as a data version gated by row_count_above_floor (policy.data.min_rows): the app's writer closes
    # a segment by age only once it holds that many served rows.
    app = _app(tmp_path, FakeRegistry(), Sink())
    floor = load_spec("synthetic").policy.data.min_rows
    assert floor > 1
    assert status_of(app)["synthetic"]["writer"]["min_served_rows"] == floor
