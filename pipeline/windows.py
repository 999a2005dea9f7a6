"""Crops of the cached frame sequence: random windows in training, covering windows at test.

With ``models.<cnn|cnn_lstm>.crop_s`` set, the feature cache holds each clip whole (up to
``features.seconds``, padded after it) and the network sees windows of ``crop_s`` seconds:
in training one window a clip at a random start, drawn afresh every epoch (an augmentation
that uses every part of a long recording, not only its centre); for validation, test and
inference, windows that cover the clip's real frames, at most half a window apart, whose class
probabilities are averaged into the clip's. A clip no longer than the window is one window
from its first frame (its padding included), as before. Pure NumPy; the model is any
callable from a (windows, frames, features) batch to probabilities.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np


def crop_frames(model_params: Mapping, feature_config: Mapping, *, key: str = "crop_s") -> int | None:
    """Frames in one window of ``model_params["crop_s"]`` seconds at the cache's frame rate
    (as many as a clip of that length has), or None when the model does not crop."""
    from pipeline.extraction.config import FeatureConfig, n_valid_frames
    from pipeline.params import ParamsError

    seconds = model_params.get("crop_s")
    if seconds is None:
        return None
    config = FeatureConfig.from_dict(dict(feature_config))
    samples = int(round(float(seconds) * config.sr))
    if samples < config.n_fft:
        raise ParamsError(f"{key}: {seconds} s gives {samples} samples at {config.sr} Hz, fewer than "
                          f"features.n_fft={config.n_fft}; raise {key} (e.g. 3.0)")
    return n_valid_frames(samples, config=config)


def check_crop(width: int | None, *, kind: str, frames: int, crop_s: float | None, seconds: float, key: str) -> None:
    """Windows are cut from frame sequences (``kind``), shorter than the cached clip (``frames``
    of ``seconds``), else cropping would do nothing; raises :class:`pipeline.params.ParamsError`."""
    from pipeline.params import ParamsError

    if width is None:
        return
    if kind != "sequence":
        raise ParamsError(f"{key}: {crop_s} s crops frame sequences, and this model reads {kind} vectors; "
                         f"set its input to sequence or {key}: null")
    if width >= frames:
        raise ParamsError(f"{key}: {crop_s} s is not shorter than the cached clips (features.seconds: {seconds}); "
                         f"raise features.seconds (e.g. 9.0, the longest clip of the corpora) or set {key}: null")


def random_starts(n_frames: np.ndarray, *, width: int, rng: np.random.Generator) -> np.ndarray:
    """One start frame per clip, uniform over the starts whose window lies inside the clip's
    ``n_frames`` real frames (0 when the clip is no longer than ``width``)."""
    room = np.maximum(np.asarray(n_frames, np.int64) - width, 0)
    return rng.integers(0, room + 1)


def cut(x: np.ndarray, starts: np.ndarray, *, width: int) -> np.ndarray:
    """``x[i, starts[i]:starts[i] + width]`` for every i: (n, width, features) from (n, frames, features)."""
    rows = np.asarray(starts, np.int64)[:, None] + np.arange(width)[None, :]
    return x[np.arange(len(x))[:, None], rows]


def cover(n_frames: np.ndarray, *, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows that cover each clip: (clip index, start) per window, clip by clip. A clip
    of ``n`` real frames gets ``1 + ceil((n - width) / (width // 2))`` windows spread evenly
    from frame 0 to ``n - width`` (at most half a window apart), one when ``n <= width``."""
    n = np.asarray(n_frames, np.int64)
    room = np.maximum(n - width, 0)
    hop = max(width // 2, 1)
    counts = 1 + -(-room // hop)
    clip = np.repeat(np.arange(len(n)), counts)
    starts = np.concatenate([np.rint(np.linspace(0, r, c)).astype(np.int64) for r, c in zip(room, counts)]) \
        if len(n) else np.zeros(0, np.int64)
    return clip, starts


def mean_by_clip(probs: np.ndarray, clip: np.ndarray, *, n: int) -> np.ndarray:
    """The mean of the window rows of ``probs`` (windows, classes) per clip: (n, classes)."""
    total = np.zeros((n, probs.shape[1]))
    np.add.at(total, clip, np.asarray(probs, np.float64))
    return total / np.maximum(np.bincount(clip, minlength=n), 1)[:, None]


def predict_covering(model: Callable[[np.ndarray], np.ndarray], x: np.ndarray, n_frames: np.ndarray, *,
                     width: int, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (n, classes) of clips ``x`` (n, frames, features): the mean over
    each clip's covering windows (:func:`cover`) of ``model``'s probabilities, predicted
    ``batch_size`` windows at a time."""
    clip, starts = cover(n_frames, width=width)
    out = [np.asarray(model(cut(x[clip[i:i + batch_size]], starts[i:i + batch_size], width=width)), np.float64)
           for i in range(0, len(clip), batch_size)]
    if not out:
        return np.zeros((0, 0))
    return mean_by_clip(np.concatenate(out), clip, n=len(x))
