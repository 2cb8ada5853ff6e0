"""``mlops-serve``: online inference on the registry, with the batch path's routing, rollouts and prediction log.

Pure of Dagster at request time (the prediction-log contract it shares with the code location is the core's
:mod:`mlops_assets.ml.serving_contract`) (the CLI resolves the environment's stores through
:func:`mlops_assets.environments.serving_stores`, which imports it once at start-up):

* :mod:`~mlops_assets.serving.signature` — request records validated against the spec and turned into model inputs;
* :mod:`~mlops_assets.serving.segments` — the rolling Parquet segments with an Arrow IPC write-ahead file;
* :mod:`~mlops_assets.serving.deployment` — the champion/challenger/rollout snapshot read from the registry,
  verified and swapped atomically;
* :mod:`~mlops_assets.serving.app` — the ASGI app (Open Inference Protocol v2 REST, JSON records, /metrics);
* :mod:`~mlops_assets.serving.cli` — the ``mlops-serve`` console script (uvicorn).
"""
