"""Loading cached features for rows of ``split.csv`` (I/O at the edge of train/evaluate).

Features live in ``<features.out>/<source>/<corpus>/`` (see :mod:`pipeline.features`); rows are
joined on ``clip_id``. A clip listed in the split but absent from the features (it failed to
decode there) is counted and reported, never silently dropped. A cache that a killed stage or
a damaged disk left truncated, inconsistent or with non-finite values raises
:class:`CacheError` naming the file and how to rebuild it: no model is trained on garbage.
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


class CacheError(ValueError):
    """A feature cache file is missing, truncated or corrupt; the message names it and the fix."""


def _stage(kind: str, source: str, corpus: str) -> str:
    stage = "functionals" if kind == "functionals" else "features"
    return f"{stage}{'_augmented' if source == 'augmented' else ''}@{corpus}"


def _cache_error(path: Path, problem: str, *, kind: str, source: str, corpus: str) -> CacheError:
    stage = _stage(kind, source, corpus)
    return CacheError(f"{path}: {problem}; restore it with `dvc checkout {stage}` or rebuild it with "
                      f"`dvc repro --force-downstream {stage}`")


def _open_cache(where: Path, *, kind: str, source: str, corpus: str) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """(clip ids, the memory-mapped array, frame counts) of one cache folder, checked for
    presence, readability and agreeing row counts."""
    where_ = dict(kind=kind, source=source, corpus=corpus)
    paths = {"index": where / "index.csv", "x": where / f"{kind}.npy", "n": where / "n_frames.npy"}
    for path in paths.values():
        if not path.is_file():
            raise _cache_error(path, "missing from the feature cache", **where_)
    try:
        index = pd.read_csv(paths["index"])["clip_id"]
    except (ValueError, KeyError, OSError) as err:
        raise _cache_error(paths["index"], f"unreadable ({type(err).__name__}: {err})", **where_) from None
    loaded = {}
    for key in ("x", "n"):
        try:
            loaded[key] = np.load(paths[key], mmap_mode="r")
        except (ValueError, OSError, EOFError) as err:
            raise _cache_error(paths[key], f"truncated or corrupt ({err})", **where_) from None
    if not (len(loaded["x"]) == len(loaded["n"]) == len(index)):
        raise _cache_error(paths["x"], f"{len(loaded['x'])} rows, but {paths['n'].name} has {len(loaded['n'])} and "
                                       f"{paths['index'].name} {len(index)} (an interrupted write)", **where_)
    return index, loaded["x"], loaded["n"]


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
        index, arr, n_frames_all = _open_cache(where, kind=kind, source=source, corpus=corpus)
        position = pd.Series(np.arange(len(index)), index=index.values)
        found = group.clip_id.isin(position.index)
        missing += group.clip_id[~found].tolist()
        pos = position[group.clip_id[found]].to_numpy()
        order = np.argsort(pos)  # read the memory map in file order, then restore row order
        block = np.empty((len(pos),) + arr.shape[1:], np.float32)
        block[order] = arr[pos[order]]
        if not np.isfinite(block).all():
            bad = int((~np.isfinite(block.reshape(len(block), -1))).any(axis=1).sum())
            raise _cache_error(where / f"{kind}.npy", f"non-finite values in {bad} of the {len(block)} rows read "
                                                      "(corrupt)", kind=kind, source=source, corpus=corpus)
        parts.append(block)
        frames.append(np.asarray(n_frames_all[pos]))
        kept.append(group[found])
    if not parts:
        raise ValueError("no rows to load")
    out_rows = pd.concat(kept)
    x, n_frames = np.concatenate(parts), np.concatenate(frames).astype(np.int32)
    order = np.argsort(out_rows.index.to_numpy(), kind="stable")  # back to the caller's row order
    return Features(x=x[order], n_frames=n_frames[order], rows=out_rows.iloc[order].reset_index(drop=True),
                    missing=missing)
