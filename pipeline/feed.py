"""Model input streamed from the feature cache: standardised batches, never the whole set.

Training, validation and prediction read their clips through a :class:`Feed`, a number of
examples and a function that returns any of them standardised (float32). A feed over a
:class:`pipeline.dataset.Source` reads the cache files batch by batch, so the memory of
training depends on the batch size and the model, not on the number of clips; a feed over
an array (tests, inference) is the same interface. The scaler is fitted block by block
(:func:`scaler`), equal bit for bit to fitting it on the whole array.

:func:`keras_batches` hands a feed to Keras as a ``tf.data`` pipeline that draws the batch
order exactly as ``Model.fit(x, y, shuffle=True)`` does on arrays (the same seeded
``tf.random.shuffle`` of the indices, once per epoch, full batches then the partial one),
so streaming training gives the weights in-memory training gave, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from pipeline import bundle as B
from pipeline.dataset import Source

BLOCK = 256
"""Clips per block when a scaler is fitted or a set is predicted from the cache."""


@dataclass
class Feed:
    """``n`` examples of ``shape``; ``read(idx)`` gives examples ``idx`` as standardised float32;
    ``n_frames`` the real-audio frames of each (None: every frame is real)."""

    n: int
    shape: tuple[int, ...]
    read: Callable[[np.ndarray], np.ndarray]
    n_frames: np.ndarray | None = None

    def __len__(self) -> int:
        return self.n

    @classmethod
    def of(cls, x) -> "Feed":
        """A feed over an in-memory array (or a feed, returned as is)."""
        if isinstance(x, Feed):
            return x
        x = np.asarray(x)
        return cls(len(x), tuple(x.shape[1:]), lambda idx: x[idx])

    def all(self) -> np.ndarray:
        return self.read(np.arange(self.n))


def speaker_stats(source: Source) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each speaker's own (mean, std), fitted block by block over that speaker's clips."""
    speakers = source.rows.speaker.to_numpy()
    out = {}
    for spk in np.unique(speakers):
        own = source.subset(speakers == spk)
        out[spk] = B.fit_stats_blocks(lambda own=own: ((x, own.n_frames[i]) for i, x in own.chunks(BLOCK)))
    return out


def scaler(source: Source, *, speaker_norm: bool) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """(mean, std, per-speaker stats or None) fitted on ``source`` block by block: the same
    numbers as :func:`pipeline.bundle.fit_stats` on the whole array (after
    :func:`pipeline.bundle.speaker_normalise` when ``speaker_norm``)."""
    stats = speaker_stats(source) if speaker_norm else None
    speakers = source.rows.speaker.to_numpy()

    def blocks():
        for idx, x in source.chunks(BLOCK):
            n = source.n_frames[idx]
            yield (B.speaker_normalise(x, n, speakers[idx], stats) if speaker_norm else x), n

    mean, std = B.fit_stats_blocks(blocks)
    return mean, std, stats


def standardised(source: Source, *, mean: np.ndarray, std: np.ndarray, stats: dict | None = None) -> Feed:
    """A feed of ``source`` through the scaler (and the per-speaker ``stats``, if any)."""
    speakers = source.rows.speaker.to_numpy()

    def read(idx: np.ndarray) -> np.ndarray:
        return B.standardise(source.read(idx), source.n_frames[idx], mean=mean, std=std,
                             speakers=None if stats is None else speakers[idx], speaker_stats=stats)
    return Feed(len(source), source.shape, read, source.n_frames)


def covering(feed: Feed, *, width: int) -> tuple[Feed, np.ndarray]:
    """A feed of the windows of ``width`` frames that cover each example of ``feed``
    (:func:`pipeline.windows.cover`), and the example each window comes from."""
    from pipeline.windows import cover, cut

    n_frames = np.full(feed.n, feed.shape[0]) if feed.n_frames is None else feed.n_frames
    clip, starts = cover(n_frames, width=width)

    def read(idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, np.int64)
        own, back = np.unique(clip[idx], return_inverse=True)
        return cut(feed.read(own)[back], starts[idx], width=width)
    return Feed(len(clip), (width,) + tuple(feed.shape[1:]), read), clip


def keras_batches(n: int, read: Callable[[np.ndarray], tuple], signature: Sequence, *, batch_size: int, shuffle: bool,
                  min_batch: int = 1):
    """A ``tf.data.Dataset`` of ``read(indices)`` batches (a tuple of arrays matching the
    ``tf.TensorSpec`` ``signature``), in Keras's array order: with ``shuffle``, a fresh
    seeded permutation each epoch, as ``keras``'s ``ArrayDataAdapter`` draws it. A last
    partial batch of fewer than ``min_batch`` examples (the replicas of a distribution
    strategy, each of which needs one) joins the batch before it."""
    import tensorflow as tf

    full, partial = divmod(n, batch_size)
    if 0 < partial < min_batch and full:
        full, partial = full - 1, partial + batch_size

    def permutation(_):
        # The same two ops as Keras's adapter, so the seeded shuffle draws the same order.
        indices = tf.range(n, dtype=tf.int64)
        if shuffle:
            indices = tf.random.shuffle(indices)
        return indices

    def batches(indices):
        first = tf.reshape(tf.slice(indices, [0], [full * batch_size]), [full, batch_size])
        out = tf.data.Dataset.from_tensor_slices(first)
        if partial:
            out = out.concatenate(tf.data.Dataset.from_tensors(tf.slice(indices, [full * batch_size], [partial])))
        return out

    def grab(i):
        # The batch dimension stays static when every batch is full, as Keras's gather keeps it
        # (a static or unknown batch size compiles a different, not bitwise equal, graph).
        arrays = tf.numpy_function(lambda j: tuple(read(j)), [i], [s.dtype for s in signature], stateful=False)
        return tuple(tf.ensure_shape(a, [i.shape[0]] + list(s.shape)[1:]) for a, s in zip(arrays, signature))

    ds = tf.data.Dataset.range(1).map(permutation).prefetch(1).flat_map(batches).map(grab)
    ds = ds.apply(tf.data.experimental.assert_cardinality(full + bool(partial)))
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return ds.with_options(options).prefetch(2)


def open_inputs(rows, *, features_dir, kinds: Sequence[str]) -> dict[str, Source]:
    """``{kind: Source}`` for every feature array a bundle reads, over the same clips: a clip
    missing from any array is left out of all (and listed in each source's ``missing``)."""
    from pipeline.dataset import open_source

    sources = {k: open_source(rows, features_dir=features_dir, kind=k) for k in kinds}
    keep = set.intersection(*(set(s.rows.clip_id) for s in sources.values()))
    missing = sorted(set(rows.clip_id) - keep)
    out = {}
    for k, s in sources.items():
        s = s.subset(s.rows.clip_id.isin(keep).to_numpy())
        s.missing = missing
        out[k] = s
    return out


def predict(bundle, sources: dict[str, Source]) -> np.ndarray:
    """Class probabilities of every clip of ``sources`` (from :func:`open_inputs`), read and
    predicted block by block; with speaker normalisation each speaker's statistics come from
    all of that speaker's clips, as when the set is predicted at once. Blocks of
    :data:`BLOCK` clips, a multiple of the bundle's batch of 64, so each clip gets the
    probabilities a whole-set call gives (a model that crops batches the windows of a block,
    :mod:`pipeline.windows`: the same up to the float rounding of another batch)."""
    first = next(iter(sources.values()))
    speakers = first.rows.speaker.to_numpy()
    stats = {k: speaker_stats(s) for k, s in sources.items()} if bundle.speaker_norm else None
    out = [bundle.predict_inputs({k: (s.read(idx), s.n_frames[idx]) for k, s in sources.items()},
                                 speakers=speakers[idx], speaker_stats=stats)
           for idx in np.array_split(np.arange(len(first)), range(BLOCK, len(first), BLOCK))]
    return np.concatenate(out) if out else np.zeros((0, len(bundle.labels)))
