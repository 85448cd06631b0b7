"""Figures and the HTML page of an evaluation."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np


def confusion_figure(matrix, labels: list[str], path: str | Path) -> None:
    """Draw the confusion matrix (rows true, columns predicted) as a PNG.

    Cells are coloured by the row-normalised fraction (recall per true class) and show
    the count, so rare classes stay readable.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    size = 1.6 + 0.75 * len(labels)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted cell type")
    axes.set_ylabel("annotated cell type")
    for row in range(len(labels)):
        for column in range(len(labels)):
            colour = "white" if fractions[row, column] > 0.6 else "black"
            axes.text(column, row, str(counts[row, column]), ha="center", va="center", color=colour, fontsize=8)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the annotated class")
    axes.set_title("Confusion matrix")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=120)
    plt.close(figure)


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def render_report(metrics: dict, confusion_png: str | None) -> str:
    """Return a self-contained HTML page with the headline metrics, per-class table and figure."""
    model = metrics.get("model") or {}
    headline = [
        ("tiles", metrics.get("n_tiles")),
        ("tiles with a cell type", metrics.get("n_cell_type_tiles")),
        ("accuracy", metrics.get("accuracy")),
        ("balanced accuracy", metrics.get("balanced_accuracy")),
        ("macro-F1", metrics.get("macro_f1")),
        ("expected calibration error", metrics.get("ece")),
        ("tiles with an anomaly label", metrics.get("n_anomaly_tiles")),
        ("anomaly AUROC", metrics.get("anomaly_auroc")),
        ("anomaly kind accuracy", metrics.get("anomaly_kind_accuracy")),
    ]
    rows = "\n".join(f"<tr><th>{html.escape(name)}</th><td>{_cell(value)}</td></tr>" for name, value in headline)
    per_class = "\n".join(
        f"<tr><td>{html.escape(str(name))}</td><td>{_cell(values.get('precision'))}</td>"
        f"<td>{_cell(values.get('recall'))}</td><td>{_cell(values.get('f1'))}</td><td>{_cell(values.get('support'))}</td></tr>"
        for name, values in (metrics.get("per_class") or {}).items()
    )
    modalities = "\n".join(
        f"<tr><td>{html.escape(str(name))}</td><td>{_cell(values.get('n_tiles'))}</td>"
        f"<td>{_cell(values.get('macro_f1'))}</td><td>{_cell(values.get('anomaly_auroc'))}</td></tr>"
        for name, values in (metrics.get("per_modality") or {}).items()
    )
    figure = (f'<h2>Confusion matrix</h2>\n<img src="{html.escape(confusion_png)}" alt="confusion matrix of cell types">'
              if confusion_png else "")
    title = f"Evaluation of {model.get('name', 'model')}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin-bottom:1.5em}}
th,td{{border:1px solid #ccc;padding:0.3em 0.7em;text-align:left}}img{{max-width:100%}}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Model spec <code>{html.escape(str(model.get('spec', '')))}</code>, weights SHA-256
<code>{html.escape(str(model.get('checksum', ''))[:16])}</code>. Predictions are zero-shot labels computed as the
pipeline computes them; the anomaly AUROC ranks tiles by anomaly score against the annotated anomaly flag.</p>
<h2>Summary</h2>
<table>{rows}</table>
<h2>Per cell type</h2>
<table><tr><th>cell type</th><th>precision</th><th>recall</th><th>F1</th><th>tiles</th></tr>
{per_class}</table>
<h2>Per modality</h2>
<table><tr><th>modality</th><th>tiles</th><th>macro-F1</th><th>anomaly AUROC</th></tr>
{modalities}</table>
{figure}
</body></html>
"""
