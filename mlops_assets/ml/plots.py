"""Plots of an evaluation (ROC curves, reliability diagram) for Dagster markdown metadata.

:func:`roc_curve_svg` and :func:`reliability_svg` give markdown embedding a small SVG line chart as a
percent-encoded data URI, under :data:`MARKDOWN_INLINE_CHARS` characters, so that Dagster's UI shows it inline
(a longer markdown value hides behind "[Show Markdown]"). Measured on the flights and synthetic evaluations:
645-981 characters each, against 34-43 KB for the matplotlib PNGs they replace (which hid behind
"[Show Markdown]" and were 85 % of an evaluation's metadata); a 5-colour PNG of the same ROC curves without text
at 160x120 px still takes about 1,070 bytes (1,460 characters in base64). No plotting library draws a chart
this small (matplotlib's SVG of one empty 1.8x1.4 in axes is 6.7 KB, 1.1 KB with the axes switched off), so the
few SVG elements are written here.
"""

import html
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn import metrics as skm

from mlops_assets.ml.evaluation import ReliabilityBin

# --------------------------------------------------------------------------------------------------
# Small SVG charts, inline in Dagster's UI
# --------------------------------------------------------------------------------------------------

#: Dagster's UI renders a markdown metadata value inline only when it is shorter than this many characters
#: (the JavaScript string length, in UTF-16 code units); a longer one hides behind "[Show Markdown]". Source:
#: dagster-ui ``ui-core/src/metadata/MetadataEntry.tsx`` (1.13: ``expandSmallValues && entry.mdStr.length < 1000``,
#: the same limit for JSON); the asset's latest-materialization and event views pass ``expandSmallValues``.
MARKDOWN_INLINE_CHARS = 1000

#: Line colour of each model: Okabe & Ito's colour-blind safe blue, orange and bluish green, in short hex.
MODEL_COLOURS: dict[str, str] = {"candidate": "#07b", "production": "#e90", "baseline": "#096"}
#: False positive rates at which :func:`roc_curve_svg` draws each curve (denser where ROC curves rise steeply).
ROC_FPR_GRID: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Display size of the SVG charts, in CSS pixels (the drawing is a 100 x 100 unit square, scaled).
SVG_PIXELS = 180

# Percent-encoding of the SVG text in a data URI: what ends a markdown link destination (space, parentheses) or a
# URL's data (#, the fragment) and % itself. Markdown renderers percent-encode the rest (< >) when they render.
_URI_ESCAPES = str.maketrans({"%": "%25", "#": "%23", " ": "%20", "(": "%28", ")": "%29"})


def markdown_chars(text: str) -> int:
    """Length of ``text`` as Dagster's UI measures it (JavaScript ``length``: UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _xy(xs: Sequence[float], ys: Sequence[float]) -> list[tuple[int, int]]:
    """Points of the unit square as SVG coordinates (0-100, y downwards), consecutive repeats dropped."""
    points: list[tuple[int, int]] = []
    for x, y in zip(xs, ys, strict=True):
        point = (round(100 * min(max(x, 0.0), 1.0)), round(100 * (1.0 - min(max(y, 0.0), 1.0))))
        if not points or points[-1] != point:
            points.append(point)
    return points


def _svg_markdown(
    alt: str, lines: Mapping[str, list[tuple[int, int]]], legend: Mapping[str, str], *, dots: bool, legend_top: bool
) -> str:
    """Markdown of a unit-square line chart: frame, dashed diagonal, one polyline per model, a legend in its colours.

    Args:
        alt: Alternative text.
        lines: Model → its ``_xy`` points (the first drawn on top).
        legend: Model → its legend text.
        dots: Also mark each point (the bins of a reliability diagram).
        legend_top: Legend in the upper left corner (else right-aligned in the lower right).
    """
    colours = {name: MODEL_COLOURS.get(name, "#555") for name in lines}
    body = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='-1 -1 102 102' width='{SVG_PIXELS}' height='{SVG_PIXELS}' "
        "font-family='sans-serif' font-size='7'>",
        "<path d='M0,0H100V100H0Z' fill='#fff' stroke='#999'/>",
        "<path d='M0,100L100,0' stroke='#999' stroke-dasharray='2'/>",
        "<g fill='none' stroke-width='1.5'>",
    ]
    # The first model (the candidate) is drawn last, on top of the others.
    for name, points in reversed(list(lines.items())):
        # Commas only between numbers: a space would cost three characters (%20) in the data URI.
        body.append(f"<polyline points='{','.join(f'{x},{y}' for x, y in points)}' stroke='{colours[name]}'/>")
        if dots and points:
            marks = "".join(f"M{x},{y}h0" for x, y in points)
            body.append(f"<path d='{marks}' stroke='{colours[name]}' stroke-width='4' stroke-linecap='round'/>")
    body.append("</g>" if legend_top else "</g><g text-anchor='end'>")
    for i, (name, text) in enumerate(legend.items()):
        x, y = (3, 9 + 9 * i) if legend_top else (97, 97 - 9 * (len(legend) - 1 - i))
        body.append(f"<text x='{x}' y='{y}' fill='{colours[name]}'>{html.escape(text, quote=False)}</text>")
    body.append("</svg>" if legend_top else "</g></svg>")
    return f"![{alt}](data:image/svg+xml,{''.join(body).translate(_URI_ESCAPES)})"


def roc_curve_svg(y: np.ndarray, scores_by_model: Mapping[str, np.ndarray]) -> str:
    """ROC curves of several models on the same labels, as a small inline SVG chart in markdown.

    Each curve is the best true positive rate at a false positive rate of at most each of :data:`ROC_FPR_GRID`
    (exact at those points, straight between them); the legend gives each model's ROC AUC
    (:func:`sklearn.metrics.roc_auc_score`) in its colour (:data:`MODEL_COLOURS`). Deterministic.

    Args:
        y: 0/1 labels.
        scores_by_model: Model name → its scores for ``y`` (legend in mapping order).

    Returns:
        ``![ROC curves](data:image/svg+xml,...)``, shorter than :data:`MARKDOWN_INLINE_CHARS` for up to three models
        (with more, the curves are drawn at every other false positive rate of the grid).

    Raises:
        ValueError: ``y`` lacks a class (the curve is undefined) or a score array has another length.
    """
    labels = np.asarray(y)
    if len(np.unique(labels)) < 2:
        raise ValueError("a ROC curve needs both classes in y")
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    legend: dict[str, str] = {}
    for name, scores in scores_by_model.items():
        if len(scores) != len(labels):
            raise ValueError(f"{name}: {len(scores)} scores for {len(labels)} labels")
        fpr, tpr, _ = skm.roc_curve(labels, scores)
        curves[name] = (fpr, tpr)
        legend[name] = f"{name} {skm.roc_auc_score(labels, scores):.3f}"

    def chart(grid: Sequence[float]) -> str:
        lines: dict[str, list[tuple[int, int]]] = {}
        for name, (fpr, tpr) in curves.items():
            # fpr and tpr rise together: the last point at or below a grid value has the best TPR there.
            best = tpr[np.searchsorted(fpr, grid, side="right") - 1]
            lines[name] = _xy([0.0, *grid], [0.0, *best])
        return _svg_markdown("ROC curves", lines, legend, dots=False, legend_top=False)

    full = chart(ROC_FPR_GRID)
    # More than three models: every other false positive rate, so that the chart stays inline as long as it can.
    return full if markdown_chars(full) < MARKDOWN_INLINE_CHARS else chart((*ROC_FPR_GRID[:-1:2], 1.0))


def reliability_svg(tables: Mapping[str, Sequence[ReliabilityBin]]) -> str:
    """Reliability diagram as a small inline SVG chart in markdown: observed positive rate against mean score.

    One line per model through its non-empty bins, each marked with a dot unless that would make the markdown
    too long to show inline; the dashed diagonal is perfect calibration. The legend names the models in their
    colours (:data:`MODEL_COLOURS`); the bins' counts and rates are in the reliability table.

    Args:
        tables: Model name → its reliability table (e.g. ``Evaluation.reliability``); empty bins are left out.

    Returns:
        ``![reliability diagram](data:image/svg+xml,...)``, shorter than :data:`MARKDOWN_INLINE_CHARS` for two
        models of up to 10 bins with dots, of up to 20 bins without (longer for more: then the UI shows it behind
        "[Show Markdown]").
    """
    lines = {
        name: _xy([b.mean_score for b in table if b.n], [b.observed_rate for b in table if b.n])
        for name, table in tables.items()
    }
    legend = {name: name for name in lines}
    with_dots = _svg_markdown("reliability diagram", lines, legend, dots=True, legend_top=True)
    if markdown_chars(with_dots) < MARKDOWN_INLINE_CHARS:
        return with_dots
    # Many bins: the lines alone, so that the chart stays inline as long as it can.
    return _svg_markdown("reliability diagram", lines, legend, dots=False, legend_top=True)
