"""Loading cached features for rows of ``split.csv`` (I/O at the edge of train/evaluate).

Features live in ``<features.out>/<source>/<corpus>/`` (see :mod:`pipeline.features`); rows are
joined on ``clip_id``. A clip listed in the split but absent from the features (it failed to
decode there) is counted and reported, never silently dropped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

KINDS = ("sequence", "utterance", "functionals")
"""Feature arrays: the ``features`` stage's frame sequences and utterance vectors, and the
``functionals`` stage's eGeMAPS functionals (in ``<features.out>/functionals/<source>/<corpus>/``)."""


@dataclass
class Features:
    """Aligned arrays for a set of clips.

    x: float32, (n, frames, features) for ``sequence`` or (n, features) for ``utterance``;
    n_frames: int32 (n,); rows: the split rows (clip_id, speaker, corpus, label, split, ...).
    """

    x: np.ndarray
    n_frames: np.ndarray
    rows: pd.DataFrame
    missing: list[str]


def folder(features_dir: Path, *, kind: str, source: str, corpus: str) -> Path:
    """The folder holding ``kind`` arrays of ``corpus`` for ``source`` (original | augmented)."""
    base = Path(features_dir) / "functionals" if kind == "functionals" else Path(features_dir)
    return base / source / corpus


def feature_meta(features_dir: Path, corpus: str, *, kind: str = "sequence") -> dict:
    """The ``meta.json`` of a corpus's original features of ``kind`` (config, dtype, column names)."""
    return json.loads((folder(features_dir, kind=kind, source="original", corpus=corpus) / "meta.json").read_text())


def load(rows: pd.DataFrame, *, features_dir: Path, kind: str, source: str = "original") -> Features:
    """Gather the features of ``rows`` (any mix of corpora) in the order of ``rows``."""
    if kind not in KINDS:
        raise ValueError(f"feature kind {kind!r} is not one of {KINDS}")
    rows = rows.reset_index(drop=True)
    parts, frames, kept, missing = [], [], [], []
    for corpus, group in rows.groupby("corpus", sort=False):
        where = folder(features_dir, kind=kind, source=source, corpus=corpus)
        index = pd.read_csv(where / "index.csv").clip_id
        position = pd.Series(np.arange(len(index)), index=index.values)
        found = group.clip_id.isin(position.index)
        missing += group.clip_id[~found].tolist()
        pos = position[group.clip_id[found]].to_numpy()
        arr = np.load(where / f"{kind}.npy", mmap_mode="r")
        order = np.argsort(pos)  # read the memory map in file order, then restore row order
        block = np.empty((len(pos),) + arr.shape[1:], np.float32)
        block[order] = arr[pos[order]]
        parts.append(block)
        frames.append(np.load(where / "n_frames.npy")[pos])
        kept.append(group[found])
    if not parts:
        raise ValueError("no rows to load")
    out_rows = pd.concat(kept)
    x, n_frames = np.concatenate(parts), np.concatenate(frames).astype(np.int32)
    order = np.argsort(out_rows.index.to_numpy(), kind="stable")  # back to the caller's row order
    return Features(x=x[order], n_frames=n_frames[order], rows=out_rows.iloc[order].reset_index(drop=True),
                    missing=missing)
