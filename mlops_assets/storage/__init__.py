"""The storage layer: the model registry (:mod:`mlops_assets.storage.registry`), the artifact stores
(:mod:`mlops_assets.storage.artifacts`) and atomic file writes (:mod:`mlops_assets.storage.files`). Plain
Python over SQLAlchemy, the filesystem and boto3; never imports dagster. Modules of the ML core
(:mod:`mlops_assets.ml`) that need an artifact reference as a type import it from
:mod:`mlops_assets.storage.artifacts.store`, which does not import skops.
"""
