"""Small PNG plots of an evaluation (ROC curves, reliability diagram) for Dagster markdown metadata.

Figures are drawn with :class:`matplotlib.figure.Figure` on an explicit Agg canvas, never through
``pyplot``: that keeps matplotlib's global backend and figure registry untouched (no GUI backend in a
worker, no figures leaking across runs) and makes the module safe to import anywhere. matplotlib itself is
imported when the first figure is drawn, not with this module (it costs about a third of a second, and only the
evaluation step draws).
"""

import base64
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from sklearn import metrics as skm

from mlops_assets.ml.evaluation import ReliabilityBin

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGSIZE_IN = (4.0, 3.0)
DPI = 100


def _figure() -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: "Figure") -> bytes:
    buffer = io.BytesIO()
    # No "Software" entry (it carries the matplotlib version), so equal inputs give equal bytes.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def roc_curve_png(y: np.ndarray, scores_by_model: Mapping[str, np.ndarray]) -> bytes:
    """ROC curves of several models on the same labels, with each model's AUC in the legend.

    Args:
        y: 0/1 labels.
        scores_by_model: Model name → its scores for ``y`` (plotted in mapping order).

    Returns:
        PNG bytes (4×3 in at 100 dpi).

    Raises:
        ValueError: ``y`` lacks a class (the curve is undefined) or a score array has another length.
    """
    labels = np.asarray(y)
    if len(np.unique(labels)) < 2:
        raise ValueError("a ROC curve needs both classes in y")
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    for name, scores in scores_by_model.items():
        if len(scores) != len(labels):
            raise ValueError(f"{name}: {len(scores)} scores for {len(labels)} labels")
        fpr, tpr, _ = skm.roc_curve(labels, scores)
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{name} (AUC {skm.roc_auc_score(labels, scores):.3f})")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01), title="ROC")
    ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


def reliability_png(tables: Mapping[str, Sequence[ReliabilityBin]]) -> bytes:
    """Reliability diagram: observed positive rate against mean score per bin, one line per model.

    Args:
        tables: Model name → its reliability table (e.g. ``Evaluation.reliability``); empty bins are
            left out of the line.

    Returns:
        PNG bytes (4×3 in at 100 dpi).
    """
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1, label="perfectly calibrated")
    for name, table in tables.items():
        filled = [b for b in table if b.n > 0]
        ax.plot([b.mean_score for b in filled], [b.observed_rate for b in filled], marker="o", markersize=3, label=name)
    ax.set(xlabel="mean score", ylabel="observed positive rate", xlim=(0, 1), ylim=(0, 1), title="Reliability")
    ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown embedding ``png`` as a data URI, for ``dg.MetadataValue.md``.

    Args:
        png: PNG bytes.
        alt: Alternative text (square brackets are removed, as they would end it).

    Returns:
        ``![alt](data:image/png;base64,...)``.
    """
    text = alt.replace("[", "").replace("]", "")
    return f"![{text}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
