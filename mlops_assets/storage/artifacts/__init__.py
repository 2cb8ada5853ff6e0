"""Artifact stores, split so that reading a reference never pays for a model codec.

* :mod:`~mlops_assets.storage.artifacts.store`: :class:`ArtifactRef`, digest and HMAC verification,
  the :class:`ArtifactStore` protocol and the local, write-once store. Does not import skops.
* :mod:`~mlops_assets.storage.artifacts.skops_codec`: model (de)serialisation with skops and the
  reviewed allowlist of trusted types (``store_model`` / ``load_model``).
* :mod:`~mlops_assets.storage.artifacts.s3`: the same contract on S3 (conditional puts).

This package imports nothing itself, so ``import mlops_assets.storage.artifacts.store`` stays free of skops.
"""
