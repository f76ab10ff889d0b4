"""PNG figures: embedding maps (2-D projection coloured by class), training curves, grouped bar charts, and a
before / after scatter (one labelled marker per cell).

matplotlib runs headless here (the ``Agg`` backend); every function writes one PNG and returns its path. The PNG is
written atomically (see :mod:`sbert_align.files`): an interrupted run leaves an earlier figure at that path untouched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .files import atomic_path

__all__ = ["project_2d", "plot_embedding_map", "plot_training_curve", "plot_grouped_bars", "plot_before_after"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, **savefig_kwargs) -> Path:
    """Write ``fig`` to ``path`` atomically (creating its folder), close it and return the path."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".").lower() or "png", **savefig_kwargs)
    finally:
        _plt().close(fig)
    return path


def project_2d(embeddings, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``(n, d)`` embeddings -> ``(n, 2)``: ``"pca"`` (on L2-normalised rows) or ``"tsne"`` (cosine, seeded)."""
    x = np.asarray(embeddings.detach().cpu() if hasattr(embeddings, "detach") else embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"embeddings: expected a (n >= 2, d) array, got shape {x.shape}.")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (x.shape[0] - 1) // 3)))
        return TSNE(
            n_components=2, metric="cosine", init="pca", random_state=seed, perplexity=perplexity
        ).fit_transform(x)
    raise ValueError(f"method: expected 'pca' or 'tsne', got {method!r}.")


def plot_embedding_map(
    panels: Mapping[str, np.ndarray],
    labels: Sequence,
    path: str | os.PathLike,
    *,
    label_names: Sequence[str] | None = None,
    method: str = "pca",
    title: str = "",
    seed: int = 0,
) -> Path:
    """One scatter panel per entry of ``panels`` (e.g. ``{"before": emb0, "after": emb1}``), coloured by class.

    Args:
        panels: panel title -> ``(n, d)`` embeddings of the same ``n`` texts.
        labels: ``n`` class ids (or names).
        path: PNG path.
        label_names: names of the class ids, for the legend.
        method: ``"pca"`` or ``"tsne"`` (see :func:`project_2d`).
    """
    plt = _plt()
    labels = list(labels)
    classes = sorted(set(labels), key=lambda v: (str(type(v)), v))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.5), squeeze=False)
    lab = np.asarray([classes.index(v) for v in labels])
    for ax, (name, emb) in zip(axes[0], panels.items()):
        if len(emb) != len(labels):
            raise ValueError(f"panels[{name!r}]: {len(emb)} embeddings for {len(labels)} labels.")
        xy = project_2d(emb, method=method, seed=seed)
        for ci, c in enumerate(classes):
            m = lab == ci
            text = label_names[c] if label_names is not None and isinstance(c, (int, np.integer)) else str(c)
            ax.scatter(xy[m, 0], xy[m, 1], s=9, alpha=0.75, color=cmap(ci % cmap.N), label=text)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(classes) <= 20:
        axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=2, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, bbox_inches="tight")


def plot_training_curve(
    loss_steps: Sequence[tuple[float, float]],
    eval_points: Sequence[tuple[float, float]],
    path: str | os.PathLike,
    *,
    eval_name: str = "kNN accuracy (test)",
    title: str = "",
) -> Path:
    """Training loss against step (left axis) and an evaluation metric against step (right axis, markers)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if loss_steps:
        s, v = zip(*loss_steps)
        ax.plot(s, v, color="tab:blue", label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss", color="tab:blue")
    if eval_points:
        ax2 = ax.twinx()
        s, v = zip(*eval_points)
        ax2.plot(s, v, "o-", color="tab:red", label=eval_name)
        ax2.set_ylabel(eval_name, color="tab:red")
        for x, y in eval_points:
            ax2.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_grouped_bars(
    values: Mapping[str, Mapping[str, float]],
    path: str | os.PathLike,
    *,
    ylabel: str = "kNN accuracy",
    title: str = "",
) -> Path:
    """Grouped bar chart: ``values[group][series]`` (e.g. group = dataset, series = model / pooling)."""
    plt = _plt()
    groups = list(values)
    series: list[str] = []
    for g in groups:
        series += [s for s in values[g] if s not in series]
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) * max(1, len(series)) * 0.45 + 2), 4.5))
    cmap = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
    x = np.arange(len(groups))
    for i, s in enumerate(series):
        ys = [values[g].get(s, np.nan) for g in groups]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, ys, width, label=s, color=cmap(i % cmap.N))
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=1, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path, bbox_inches="tight")


def plot_before_after(
    cells: Sequence[tuple[str, str, float, float]],
    path: str | os.PathLike,
    *,
    xlabel: str = "frozen kNN accuracy",
    ylabel: str = "aligned kNN accuracy",
    title: str = "",
) -> Path:
    """Scatter of one score before (x) against after (y), one labelled marker per cell, with the diagonal y = x.

    Markers are coloured by group (e.g. the data set, in the legend) and each is annotated with its label (e.g.
    ``model / pooling``): a cell above the diagonal gained, and a ranking that holds shows as a rising cloud.

    Args:
        cells: ``(label, group, before, after)`` per cell.
        path: PNG path (written atomically).
        xlabel: x-axis title.
        ylabel: y-axis title.
        title: figure title.

    Example::

        from sbert_align.plotting import plot_before_after

        plot_before_after([("minilm / mean", "trec6", 0.72, 0.95), ("minilm / cls", "trec6", 0.44, 0.93)],
                          "frozen_vs_aligned.png", title="TREC-6")
    """
    if not cells:
        raise ValueError("cells: expected at least one (label, group, before, after) cell, got none.")
    plt = _plt()
    groups = list(dict.fromkeys(c[1] for c in cells))
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7, 6))
    for gi, g in enumerate(groups):
        xs = [c[2] for c in cells if c[1] == g]
        ys = [c[3] for c in cells if c[1] == g]
        ax.scatter(xs, ys, s=36, color=cmap(gi % cmap.N), label=g, zorder=3)
    at: dict[tuple[float, float], list[str]] = {}  # cells on the same spot share one annotation
    for label, _, x, y in cells:
        at.setdefault((x, y), []).append(label)
    for (x, y), names in at.items():
        ax.annotate("\n".join(names), (x, y), textcoords="offset points", xytext=(5, 3), fontsize=7, va="top")
    values = [v for c in cells for v in (c[2], c[3]) if np.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max(0.02, 0.05 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1, label="y = x", zorder=1)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path, bbox_inches="tight")
