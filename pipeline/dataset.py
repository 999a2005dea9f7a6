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

KINDS = ("sequence", "utterance", "functionals", "compare", "ge2e")
"""Feature arrays: the ``features`` stage's frame sequences and utterance vectors, the
``functionals`` stage's eGeMAPS functionals (in ``<features.out>/functionals/<source>/<corpus>/``)
the ``compare`` stage's ComParE_2016 functionals (``<features.out>/compare/...``) and the
``ge2e`` stage's voice-encoder features (``<features.out>/ge2e/...``)."""
FUNCTIONAL_KINDS = ("functionals", "compare", "ge2e")
"""The per-clip descriptors (:mod:`pipeline.descriptors`: openSMILE's two sets, the GE2E voice
encoder's), each in its own stage and folder named after it."""


class CacheError(ValueError):
    """A feature cache file is missing, truncated or corrupt; the message names it and the fix."""


def _stage(kind: str, source: str, corpus: str) -> str:
    stage = kind if kind in FUNCTIONAL_KINDS else "features"
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
    base = Path(features_dir) / kind if kind in FUNCTIONAL_KINDS else Path(features_dir)
    return base / source / corpus


def feature_meta(features_dir: Path, corpus: str, *, kind: str = "sequence") -> dict:
    """The ``meta.json`` of a corpus's original features of ``kind`` (config, dtype, column names)."""
    return json.loads((folder(features_dir, kind=kind, source="original", corpus=corpus) / "meta.json").read_text())


@dataclass(frozen=True)
class _Part:
    """One cache file: where its rows start, their dtype and shape, and whose stage wrote it."""

    path: Path
    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]
    kind: str
    source: str
    corpus: str

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class Source:
    """The features of a set of rows, left in the cache files and read on demand.

    Memory holds the row table, the frame counts and the positions (a few bytes per clip),
    never the features: :meth:`read` gathers any rows as float32 (exact from the stored
    float16) with plain file reads, so neither the arrays nor a memory map's pages stay in
    the process. Every read checks that the values it returns are finite and names the file if not.
    """

    def __init__(self, rows: pd.DataFrame, n_frames: np.ndarray, missing: list[str], parts: list[_Part],
                 part: np.ndarray, pos: np.ndarray, columns: np.ndarray | None = None) -> None:
        self.rows, self.n_frames, self.missing = rows.reset_index(drop=True), n_frames.astype(np.int32), missing
        self._parts, self._part, self._pos, self._columns = parts, part, pos, columns

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example (frames, features) or (features,)."""
        shape = self._parts[0].shape
        return shape if self._columns is None else shape[:-1] + (len(self._columns),)

    def select(self, columns: np.ndarray | None) -> "Source":
        """The same rows, read with only the feature columns ``columns`` (positions in the last
        axis of the cache, e.g. :meth:`pipeline.extraction.FeatureConfig.columns`); None: all."""
        if columns is not None and (self._columns is not None or not len(columns)
                                    or np.max(columns) >= self._parts[0].shape[-1]):
            raise ValueError(f"cannot select columns {columns!r} of features of shape {self.shape}")
        return Source(self.rows, self.n_frames, self.missing, self._parts, self._part, self._pos, columns)

    def read(self, idx: np.ndarray | None = None) -> np.ndarray:
        """float32 features of rows ``idx`` (all rows if None), in the order of ``idx``."""
        idx = np.arange(len(self)) if idx is None else np.asarray(idx, dtype=np.int64)
        out = np.empty((len(idx),) + self.shape, np.float32)
        for p in np.unique(self._part[idx]):
            sel = np.flatnonzero(self._part[idx] == p)
            order = np.argsort(self._pos[idx[sel]], kind="stable")  # read each file front to back
            out[sel[order]] = _read_rows(self._parts[p], self._pos[idx[sel]][order], self._columns)
        return out

    def chunks(self, size: int):
        """(row indices, features) blocks of ``size`` rows, in row order."""
        for start in range(0, len(self), size):
            idx = np.arange(start, min(start + size, len(self)))
            yield idx, self.read(idx)

    def subset(self, idx: np.ndarray) -> "Source":
        """The rows ``idx`` (positions or a boolean mask), in that order."""
        idx = np.flatnonzero(idx) if np.asarray(idx).dtype == bool else np.asarray(idx, dtype=np.int64)
        return Source(self.rows.iloc[idx], self.n_frames[idx], self.missing, self._parts, self._part[idx], self._pos[idx],
                      self._columns)

    def features(self) -> Features:
        """Every row read into memory."""
        return Features(x=self.read(), n_frames=self.n_frames, rows=self.rows, missing=self.missing)


def _read_rows(part: _Part, positions: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    """float32 rows at sorted ``positions`` of one file, each run of neighbours in one read;
    with ``columns``, only those positions of the last axis are converted and checked (the
    file holds whole rows, so they are all read)."""
    buf = np.empty((len(positions),) + part.shape, part.dtype)
    where = dict(kind=part.kind, source=part.source, corpus=part.corpus)
    runs = np.split(np.arange(len(positions)), np.flatnonzero(np.diff(positions) != 1) + 1)
    with open(part.path, "rb") as f:
        for run in runs:
            if not len(run):
                continue
            f.seek(part.offset + int(positions[run[0]]) * part.row_bytes)
            view = memoryview(buf[run[0]:run[-1] + 1]).cast("B")
            if f.readinto(view) != len(view):
                raise _cache_error(part.path, "truncated or corrupt (shorter than its header says)", **where)
    block = (buf if columns is None else buf[..., columns]).astype(np.float32)
    if not np.isfinite(block).all():
        bad = int((~np.isfinite(block.reshape(len(block), -1))).any(axis=1).sum())
        raise _cache_error(part.path, f"non-finite values in {bad} of the {len(block)} rows read (corrupt)", **where)
    return block


def open_source(rows: pd.DataFrame, *, features_dir: Path, kind: str, source: str = "original") -> Source:
    """The cached features of ``rows`` (any mix of corpora), in the order of ``rows``, unread."""
    if kind not in KINDS:
        raise ValueError(f"feature kind {kind!r} is not one of {KINDS}")
    rows = rows.reset_index(drop=True)
    parts, part, pos, frames = [], np.full(len(rows), -1, np.int64), np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int32)
    missing = []
    for corpus, group in rows.groupby("corpus", sort=False):
        where = folder(features_dir, kind=kind, source=source, corpus=corpus)
        index, arr, n_frames_all = _open_cache(where, kind=kind, source=source, corpus=corpus)
        position = pd.Series(np.arange(len(index)), index=index.values)
        found = group.clip_id.isin(position.index).to_numpy()
        missing += group.clip_id[~found].tolist()
        at = group.index.to_numpy()[found]
        part[at] = len(parts)
        pos[at] = position[group.clip_id[found]].to_numpy()
        frames[at] = np.asarray(n_frames_all)[pos[at]]
        parts.append(_Part(where / f"{kind}.npy", int(arr.offset), arr.dtype, tuple(arr.shape[1:]), kind, source, corpus))
    if not parts:
        raise ValueError("no rows to load")
    kept = part >= 0
    return Source(rows[kept], frames[kept], missing, parts, part[kept], pos[kept])


def concat(sources: list[Source]) -> Source:
    """One source of several, rows in order (e.g. the original clips, then the augmented copies)."""
    parts, part, offset = [], [], 0
    columns = sources[0]._columns
    for s in sources:
        if not np.array_equal(s._columns if s._columns is not None else [], columns if columns is not None else []):
            raise ValueError("cannot concatenate sources read with different columns")
        parts += s._parts
        part.append(s._part + offset)
        offset += len(s._parts)
    return Source(pd.concat([s.rows for s in sources], ignore_index=True), np.concatenate([s.n_frames for s in sources]),
                  sum((s.missing for s in sources), []), parts, np.concatenate(part), np.concatenate([s._pos for s in sources]),
                  columns)


def load(rows: pd.DataFrame, *, features_dir: Path, kind: str, source: str = "original") -> Features:
    """Gather the features of ``rows`` (any mix of corpora) into memory, in the order of ``rows``."""
    return open_source(rows, features_dir=features_dir, kind=kind, source=source).features()
