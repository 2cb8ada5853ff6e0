"""Asset and run tags the wiring sets and the demo, the retrain sensors and the tests read (one place, no dagster)."""

#: Why the run was requested: ``new_data``, ``new_labels``, or a retrain trigger's reason.
REASON_TAG = "mlops/reason"
#: The landed file the run reads.
SOURCE_FILE_TAG = "mlops/source_file"
#: The data version (partition key) the run serves.
DATA_VERSION_TAG = "mlops/data_version"
#: The landing sensor's training decision in words: why this landing run trains, or why it does not.
TRAINING_TAG = "mlops/training"
#: JSON evidence behind a retrain request.
EVIDENCE_TAG = "mlops/evidence"
#: How many times this data version has landed, this landing included (a re-landing gets a new run key).
LANDING_GENERATION_TAG = "mlops/landing_generation"
#: The model an asset, check, job or run belongs to (on every one of them, and on retrain requests).
MODEL_TAG = "mlops/model"
#: An asset's lifecycle stage: ``data``, ``features``, ``models``, ``evaluations``, ``deployments``, ``monitoring``.
STAGE_TAG = "mlops/stage"
#: The package version (mlops_assets release) a retrain run was requested under (retrain sensors).
PACKAGE_VERSION_TAG = "mlops/package_version"
#: The same tag on runs requested before it was renamed: still read, so the hygiene rules see those runs' versions.
FORMER_PACKAGE_VERSION_TAG = "mlops/code_version"
