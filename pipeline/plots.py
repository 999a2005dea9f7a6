"""PNG figures for people browsing the repo (DVC renders its own from the CSV/JSON plots)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure   # no pyplot: no backend, no global figure state


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """``pyplot.subplots`` without pyplot: a :class:`Figure` (saved by ``savefig`` with
    matplotlib's Agg canvas, whatever the process's backend) and its axes."""
    figure_kw = {k: kwargs.pop(k) for k in ("figsize",) if k in kwargs}
    fig = Figure(**figure_kw)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save(fig, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})


def training_curves(history: Mapping[str, Sequence[float]], path: Path, *, title: str) -> None:
    """Loss and accuracy/UAR per epoch, training and validation."""
    fig, (a, b) = subplots(1, 2, figsize=(10, 3.6))
    for key in ("loss", "val_loss"):
        if key in history:
            a.plot(np.arange(1, len(history[key]) + 1), history[key], label=key)
    for key in ("accuracy", "val_accuracy", "val_uar"):
        if key in history:
            b.plot(np.arange(1, len(history[key]) + 1), history[key], label=key)
    for ax, what in ((a, "loss"), (b, "score")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _save(fig, path)


def confusion_heatmap(actual: Sequence[str], predicted: Sequence[str], *, labels: Sequence[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (recall per true class) with counts."""
    fig, ax = subplots(figsize=(1.0 + 0.75 * len(labels), 0.8 + 0.65 * len(labels)))
    _confusion_axes(ax, actual, predicted, labels=labels, title=title)
    _save(fig, path)


def confusion_grid(panels: Mapping[str, tuple[Sequence[str], Sequence[str]]], *, labels: Sequence[str], path: Path,
                   title: str) -> None:
    """One row-normalised confusion matrix per panel (e.g. per corpus): {title: (actual, predicted)}.
    Only the classes a panel's actual labels hold are shown as its rows."""
    n = len(panels)
    size = 0.6 + 0.55 * len(labels)
    fig, axes = subplots(1, n, figsize=(size * n + 0.5, size + 0.6), squeeze=False)
    for ax, (name, (actual, predicted)) in zip(axes[0], panels.items(), strict=True):
        rows = [c for c in labels if c in set(actual)]
        _confusion_axes(ax, actual, predicted, labels=labels, rows=rows, title=name)
    fig.suptitle(title, fontsize=11)
    _save(fig, path)


def _confusion_axes(ax, actual, predicted, *, labels: Sequence[str], title: str, rows: Sequence[str] | None = None) -> None:
    rows = list(labels if rows is None else rows)
    counts = pd.crosstab(pd.Categorical(actual, rows), pd.Categorical(predicted, labels), dropna=False).to_numpy()
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(rows)):
        for j in range(len(labels)):
            ax.text(j, i, f"{counts[i, j]}", ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=10)


def clips_per_emotion(rows: pd.DataFrame, path: Path) -> None:
    """Bar charts: clips per label for each corpus, and for each partition."""
    fig, (a, b) = subplots(1, 2, figsize=(12, 4))
    pd.crosstab(rows.label, rows.corpus).plot.bar(ax=a, stacked=True)
    a.set_title("clips per emotion and corpus")
    pd.crosstab(rows.label, rows.split)[[p for p in ("train", "val", "test") if p in set(rows.split)]].plot.bar(ax=b)
    b.set_title("clips per emotion and partition (speaker-disjoint)")
    for ax in (a, b):
        ax.set_xlabel("")
        ax.set_ylabel("clips")
    _save(fig, path)


def durations(manifest: pd.DataFrame, path: Path) -> None:
    """Histogram of clip durations per corpus."""
    fig, ax = subplots(figsize=(7, 3.6))
    for corpus, g in manifest.groupby("corpus"):
        ax.hist(g.duration_s, bins=40, alpha=0.55, label=f"{corpus} (n={len(g)})")
    ax.set_xlabel("duration (s)")
    ax.set_ylabel("clips")
    ax.legend()
    ax.set_title("clip durations")
    _save(fig, path)


def spectrograms(examples: Mapping[str, np.ndarray], path: Path, *, hop_s: float) -> None:
    """One log-mel spectrogram (mels, frames) in dB per emotion."""
    n = len(examples)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (label, logmel) in zip(axes.flat, examples.items(), strict=False):   # the grid may have spare axes
        ax.imshow(logmel, origin="lower", aspect="auto", cmap="magma",
                  extent=(0, logmel.shape[1] * hop_s, 0, logmel.shape[0]), vmin=logmel.max() - 80)
        ax.set_title(label)
        ax.set_xlabel("s")
        ax.set_ylabel("mel band")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    _save(fig, path)
