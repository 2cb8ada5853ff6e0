"""Dagster wiring, one module per lifecycle stage. Asset bodies unpack inputs, call the pure core
(:mod:`mlops_assets.ml`) and return results with metadata; no ML logic lives here."""
