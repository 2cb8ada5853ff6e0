"""The one partitioning shared by every per-version asset: data versions, added by the landing sensor."""

import dagster as dg

DATA_VERSIONS = "data_versions"

data_versions = dg.DynamicPartitionsDefinition(name=DATA_VERSIONS)
