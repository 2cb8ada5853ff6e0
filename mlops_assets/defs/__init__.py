"""The code location's component instances: one folder per model under ``models/`` (see components.py)."""
