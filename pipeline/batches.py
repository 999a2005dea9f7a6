"""Training batches with random crops, SpecAugment-style masking and mixup (pure NumPy, seeded).

Applied to *standardised* model input while a Keras model trains (never at inference, and
never to validation or test data): a masked span is set to 0, the training mean.

- **Crops** (``models.<name>.crop_s``, :mod:`pipeline.windows`): a window of the clip at a
  random start, drawn first.
- **Masks** (Park et al. 2019, on the frame features): ``time_masks`` spans of up to
  ``time_width`` frames (all features) and ``feature_masks`` spans of up to ``feature_width``
  adjacent feature columns (all frames), per example; only for sequence input.
- **Mixup** (Zhang et al. 2018): each batch is mixed with a shuffled copy of itself,
  ``x = lam * x + (1 - lam) * x[perm]`` with ``lam ~ Beta(alpha, alpha)`` per example, and the
  one-hot labels and the class weights alike.

Every random draw comes from ``np.random.default_rng([seed, epoch, batch])``, so a batch does
not depend on the order in which it is asked for.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

SPEC_KEYS = ("time_masks", "time_width", "feature_masks", "feature_width")


def check_spec(spec: Mapping | None, *, key: str = "specaugment") -> dict[str, int]:
    """A model's ``specaugment`` (``models.<name>.specaugment``, :class:`pipeline.schema.SpecAugment`):
    null (off: every count 0) or a mapping of the four non-negative integers in :data:`SPEC_KEYS`."""
    from pipeline.params import check
    from pipeline.schema import SpecAugment

    if spec is None:
        return dict.fromkeys(SPEC_KEYS, 0)
    return check(SpecAugment, spec, key=key)


def mask(x: np.ndarray, *, rng: np.random.Generator, time_masks: int, time_width: int, feature_masks: int,
         feature_width: int) -> np.ndarray:
    """A copy of sequence batch ``x`` (batch, frames, features) with random spans set to 0."""
    x = np.array(x, dtype=np.float32, copy=True)
    if x.ndim != 3:
        return x
    _, frames, features = x.shape
    for example in x:
        for _ in range(time_masks):
            width = int(rng.integers(0, min(time_width, frames) + 1))
            start = int(rng.integers(0, frames - width + 1))
            example[start:start + width, :] = 0.0
        for _ in range(feature_masks):
            width = int(rng.integers(0, min(feature_width, features) + 1))
            start = int(rng.integers(0, features - width + 1))
            example[:, start:start + width] = 0.0
    return x


def mixup(x: np.ndarray, y: np.ndarray, w: np.ndarray, *, rng: np.random.Generator,
          alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mix a batch with a permutation of itself: inputs, one-hot labels (batch, classes) and weights."""
    lam = rng.beta(alpha, alpha, size=len(x)).astype(np.float32)
    perm = rng.permutation(len(x))
    lx = lam.reshape((-1,) + (1,) * (x.ndim - 1))
    return (lx * x + (1 - lx) * x[perm], lam[:, None] * y + (1 - lam[:, None]) * y[perm],
            lam * w + (1 - lam) * w[perm])


def make_sequence(x, y: np.ndarray, *, num_classes: int, class_weight: Mapping[int, float] | None,
                  batch_size: int, seed: int, mixup_alpha: float, spec: Mapping[str, int],
                  sample_weight: np.ndarray | None = None, speakers: np.ndarray | None = None,
                  num_speakers: int = 0, crop: int | None = None):
    """A ``keras.utils.PyDataset`` of shuffled ``(x, one-hot y, sample weight)`` batches; ``x`` is
    an array or a :class:`pipeline.feed.Feed` (read batch by batch). The weight of an example is
    its class's ``class_weight``, or its entry of ``sample_weight`` (one per example) when given.
    With ``speakers`` (an index below ``num_speakers`` per example) each target row is the
    class's one-hot then the speaker's (:mod:`pipeline.models.adversary`), mixed alike by mixup.
    With ``crop`` (frames), each example is a window of that many frames at a random start
    inside its real frames (:func:`pipeline.windows.random_starts`), drawn before the masks."""
    import keras

    from pipeline.feed import Feed
    from pipeline.windows import cut, random_starts

    x = Feed.of(x)
    n_frames = None if crop is None else (np.full(len(x), x.shape[0]) if x.n_frames is None else x.n_frames)

    weights = np.ones(num_classes, np.float32)
    for c, v in (class_weight or {}).items():
        weights[c] = v

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def __len__(self) -> int:
            return int(np.ceil(len(x) / batch_size))

        def _order(self) -> np.ndarray:
            return np.random.default_rng([seed, self.epoch]).permutation(len(x))

        def __getitem__(self, i: int):
            idx = np.sort(self._order()[i * batch_size:(i + 1) * batch_size])
            rng = np.random.default_rng([seed, self.epoch, i])
            xb = x.read(idx)
            if crop is not None:
                xb = cut(xb, random_starts(n_frames[idx], width=crop, rng=rng), width=crop)
            xb = mask(xb, rng=rng, **spec)
            yb = np.eye(num_classes, dtype=np.float32)[y[idx]]
            if speakers is not None:
                yb = np.concatenate([yb, np.eye(num_speakers, dtype=np.float32)[speakers[idx]]], axis=1)
            wb = weights[y[idx]] if sample_weight is None else sample_weight[idx]
            if mixup_alpha > 0:
                xb, yb, wb = mixup(xb, yb, wb, rng=rng, alpha=mixup_alpha)
            return xb, yb, wb

        def on_epoch_end(self) -> None:
            self.epoch += 1

    return Batches()
