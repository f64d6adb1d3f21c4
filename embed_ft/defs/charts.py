"""Pictures for asset metadata: matplotlib figures rendered by the Agg canvas to PNG, embedded in markdown.

The object-oriented API (`Figure` + `FigureCanvasAgg`) is used instead of pyplot, so no global backend or figure
state is touched (the code server renders charts from several threads). Images are small (about 15-40 kB) because
they are stored in the event log with every materialization.
"""

from __future__ import annotations

import base64
import io
from typing import Mapping, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .values import ReportRow

DPI = 96


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that the Dagster UI renders as the image itself (a base64 data URI)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def loss_curve_png(series: Mapping[str, Sequence[tuple[int, float]]], title: str = "Training loss") -> Optional[bytes]:
    """Train and validation loss over steps as a PNG; None when no loss was reported."""
    drawn = {name: points for name, points in series.items() if points}
    if not drawn:
        return None
    figure = Figure(figsize=(6.4, 3.6), dpi=DPI, layout="constrained")
    ax = figure.subplots()
    styles = {"train_loss": ("train", "-", "o"), "val_loss": ("validation", "--", "s")}
    for name, points in drawn.items():
        label, line, marker = styles.get(name, (name, "-", "."))
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, linestyle=line, marker=marker if len(points) <= 40 else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return png_bytes(figure)


def report_chart_png(rows: Sequence[ReportRow], metric: str, title: str) -> Optional[bytes]:
    """Grouped bars, baseline vs fine-tuned, one group per task, for ``metric``; None when no row has it."""
    chosen = [r for r in rows if r.metric == metric]
    if not chosen:
        return None
    figure = Figure(figsize=(max(4.8, 1.6 * len(chosen) + 2.4), 3.8), dpi=DPI, layout="constrained")
    ax = figure.subplots()
    width = 0.38
    positions = range(len(chosen))
    base = ax.bar(
        [p - width / 2 for p in positions], [r.baseline for r in chosen], width, label="baseline", color="#9aa5b1"
    )
    tuned = ax.bar(
        [p + width / 2 for p in positions], [r.fine_tuned for r in chosen], width, label="fine-tuned", color="#4f46e5"
    )
    ax.bar_label(base, fmt="%.3f", fontsize=8, padding=2)
    ax.bar_label(tuned, fmt="%.3f", fontsize=8, padding=2)
    ax.set_xticks(list(positions), [r.task for r in chosen])
    ax.set_ylabel(metric)
    top = max(max(r.baseline, r.fine_tuned) for r in chosen)
    ax.set_ylim(0, max(0.05, top * 1.18))  # room for the value labels
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)  # below: never over a bar
    ax.grid(axis="y", alpha=0.3)
    return png_bytes(figure)
