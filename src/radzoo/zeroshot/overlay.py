"""Readable grounding overlays: the heatmap in colour over the grayscale image, a colour bar, the
text as title. Uses matplotlib's Agg canvas directly (no pyplot global state, no display)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np

from radzoo.errors import InputError

SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def render_overlay(
    pixels: np.ndarray,
    heatmap: np.ndarray,
    title: str,
    out: str | os.PathLike[str],
    *,
    width_px: int = 800,
    alpha: float = 0.45,
    cmap: str = "jet",
) -> Path:
    """Write the overlay to ``out`` (format from its suffix) and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    if out.suffix.lower() not in SUFFIXES:
        raise InputError(f"overlay file must end in one of {', '.join(SUFFIXES)}, got {out.name!r}")
    pixels = np.asarray(pixels, dtype=np.float32)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if pixels.ndim != 2 or heatmap.shape != pixels.shape:
        raise InputError(f"heatmap shape {heatmap.shape} does not match the image shape {pixels.shape}")
    if not np.isfinite(heatmap).all():
        raise InputError("heatmap contains NaN or infinite values")
    if width_px < 200:
        raise InputError(f"width_px must be at least 200, got {width_px}")
    lo, hi = float(heatmap.min()), float(heatmap.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    h, w = pixels.shape
    dpi = 100
    fig_w = width_px / dpi
    fig_h = fig_w * (h / w) * 0.82 + 0.9  # room for the title
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0, interpolation="bilinear")
    im = ax.imshow(heatmap, cmap=cmap, alpha=alpha, vmin=lo, vmax=hi, interpolation="bilinear")
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="similarity")
    ax.set_title("\n".join(textwrap.wrap(title, 60)[:3]) or " ", fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out
