"""Model (de)serialisation with skops, never pickle, and the reviewed allowlist of trusted types.

:func:`deserialize_model` refuses bytes that are not a skops archive before any decoding, and refuses
archives naming a type that skops does not trust by default unless the type is in the reviewed
allowlist :data:`TRUSTED_TYPES`. :func:`store_model` and :func:`load_model` put a model into, and read
it verified out of, any :class:`~mlops_assets.storage.artifacts.store.ArtifactStore`.

This is the only module of the storage layer that imports skops, and it does so on first use (in
:func:`_skops_io`), not at import: importing ``skops.io`` scans scikit-learn for its trusted types and so imports
some 400 scikit-learn modules (about half a second), which the code location, the registry and the stores never
need. Modules that merely name :func:`store_model` / :func:`load_model` stay cheap to import.
"""

import io
import zipfile
from types import ModuleType
from typing import Any

from mlops_assets.storage.artifacts.store import ArtifactIntegrityError, ArtifactRef, ArtifactStore

MODEL_SUFFIX = ".skops"

# Types that skops (0.13 to 0.16) may report from ``get_untrusted_types`` for the pipelines this
# project builds. skops 0.16 already trusts every public scikit-learn estimator, the loss/link/binning
# internals and numpy scalars, so for it only five entries are exercised: ``numpy.dtype``,
# ``functools.partial``, ``sklearn.utils.validation.check_array`` (both from the categorical
# preprocessing inside HistGradientBoosting), ``...predictor.TreePredictor`` and ``sklearn.tree._tree.Tree``.
# The rest are listed explicitly so that the allowlist, not the installed skops version's defaults,
# says what our pipelines may contain (pyproject allows skops >= 0.13, whose defaults were narrower).
# The list was found by serialising fitted Pipeline(ColumnTransformer(SimpleImputer + StandardScaler,
# OneHotEncoder | OrdinalEncoder), FunctionTransformer, HistGradientBoosting | GradientBoosting |
# LogisticRegression | DummyClassifier) and walking the archive's schema.json.
#
# Caveat for Tree and TreePredictor: skops deliberately does not trust them, because their node arrays
# hold raw indices that scikit-learn follows without bounds checks, so a *crafted* file can crash the
# process at predict time. We trust them because load_model verifies the digest recorded at
# registration (and, with a keyed store, the HMAC) before decoding: the bytes are the ones our
# training run produced. Do not feed deserialize_model bytes of unknown provenance.
#
# functools.partial is safe to trust only because skops audits its func and arguments as separate
# nodes: partial(os.system, ...) still reports ``posix.system`` and is refused.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        # Python / numpy building blocks.
        "functools.partial",
        "numpy.dtype",
        "numpy.float64",
        "numpy.ndarray",
        "numpy.random._generator.Generator",
        "numpy.random.mtrand.RandomState",
        "numpy.uint64",
        # Functions referenced by fitted estimators.
        "sklearn.utils.validation.check_array",
        # Pipelines and preprocessing.
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.impute._base.SimpleImputer",
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.preprocessing._encoders.OneHotEncoder",
        "sklearn.preprocessing._encoders.OrdinalEncoder",
        "sklearn.preprocessing._function_transformer.FunctionTransformer",
        "sklearn.preprocessing._label.LabelEncoder",
        # Classifiers.
        "sklearn.dummy.DummyClassifier",
        "sklearn.ensemble._gb.GradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.linear_model._logistic.LogisticRegression",
        # Internals of the gradient-boosting models (loss, link, binning, trees).
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.tree._tree.Tree",
    }
)

_ZIP_MAGIC = b"PK\x03\x04"


def _skops_io() -> ModuleType:
    """``skops.io``, imported on first use (later calls find it in ``sys.modules``)."""
    import skops.io

    return skops.io


def untrusted_types(data: bytes, *, uri: str = "<bytes>") -> list[str]:
    """Return the types in a skops archive that skops does not trust by default, sorted.

    Args:
        data: Candidate skops archive.
        uri: Named in error messages.

    Raises:
        ArtifactIntegrityError: ``data`` is not a skops archive (e.g. a pickle). Nothing is decoded.
    """
    # Check the container before handing bytes to any decoder: a pickle, or anything else that is
    # not a zip with a schema.json, is refused outright.
    if not data.startswith(_ZIP_MAGIC):
        raise ArtifactIntegrityError(
            f"artifact {uri}: not a skops archive (no zip header; starts with {data[:8]!r})", uri=uri
        )
    sio = _skops_io()  # outside the try: a broken skops install is not a malformed archive
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if "schema.json" not in archive.namelist():
                raise ArtifactIntegrityError(f"artifact {uri}: not a skops archive (no schema.json)", uri=uri)
        return sio.get_untrusted_types(data=data)
    except ArtifactIntegrityError:
        raise
    except Exception as exc:  # zipfile, json and skops raise a variety of types for malformed input
        raise ArtifactIntegrityError(f"artifact {uri}: not a valid skops archive: {exc!r}", uri=uri) from exc


def _refused_types(data: bytes, uri: str) -> tuple[list[str], list[str]]:
    found = untrusted_types(data, uri=uri)
    return found, sorted(set(found) - TRUSTED_TYPES)


def serialize_model(model: Any) -> bytes:
    """Serialise a model with skops.

    Raises:
        ValueError: The model contains types outside :data:`TRUSTED_TYPES`, so
            :func:`deserialize_model` would refuse it; failing here keeps such a model out of the store.
    """
    data = _skops_io().dumps(model)
    _, refused = _refused_types(data, "<new model>")
    if refused:
        raise ValueError(
            f"model {type(model).__name__} contains types outside TRUSTED_TYPES: {refused}; "
            "review them and add them to mlops_assets.storage.artifacts.skops_codec.TRUSTED_TYPES if they are safe"
        )
    return data


def deserialize_model(data: bytes, *, uri: str = "<bytes>") -> Any:
    """Deserialise a skops archive, trusting only the types in :data:`TRUSTED_TYPES` beyond skops' defaults.

    Args:
        data: skops archive bytes, already verified against their reference.
        uri: Named in error messages.

    Returns:
        The model.

    Raises:
        ArtifactIntegrityError: ``data`` is not a skops archive, or names untrusted types outside the
            allowlist (the message lists them). Raised before anything is constructed.
    """
    found, refused = _refused_types(data, uri)
    if refused:
        raise ArtifactIntegrityError(f"artifact {uri}: untrusted types outside TRUSTED_TYPES: {refused}", uri=uri)
    # Pass exactly the reviewed types found in this archive, not the whole allowlist.
    return _skops_io().loads(data, trusted=found)


def store_model(store: ArtifactStore, model: Any) -> ArtifactRef:
    """Serialise ``model`` with skops and store it under ``.skops``."""
    return store.put_bytes(serialize_model(model), MODEL_SUFFIX)


def load_model(store: ArtifactStore, ref: ArtifactRef) -> Any:
    """Read ``ref`` from ``store`` (verifying digest, size and HMAC first) and deserialise it.

    Raises:
        ArtifactIntegrityError: Verification or the skops checks fail.
    """
    data = store.get_bytes(ref)
    return deserialize_model(data, uri=ref.uri)
