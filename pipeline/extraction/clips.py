"""Waveforms to fixed-length clips: optional silence trimming, loudness normalisation, then a
crop or zero padding to ``config.seconds`` (:func:`prepare`). How many frames the real audio
fills is :func:`pipeline.extraction.config.n_valid_frames`."""
from __future__ import annotations

import numpy as np

from pipeline.audio import normalize_loudness
from pipeline.extraction.config import CROPS, FeatureConfig


def fix_length(y: np.ndarray, *, n_samples: int, crop: str) -> tuple[np.ndarray, int]:
    """Crop or zero-pad a mono clip to exactly ``n_samples``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    n_samples : int > 0
    crop : {"centre", "start"}
        Which part of a longer clip to keep: the middle, or the beginning.

    Returns
    -------
    y_fixed : np.ndarray [shape=(n_samples,)], dtype of ``y``
        Shorter clips are padded with zeros at the end.
    n_valid : int
        Samples of real audio in ``y_fixed``: ``min(n, n_samples)``.
    """
    if crop not in CROPS:
        raise ValueError(f"crop={crop!r} is not valid; choose one of {list(CROPS)}")
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got {y.shape}; mix down with audio.to_mono")
    n = len(y)
    if n >= n_samples:
        start = (n - n_samples) // 2 if crop == "centre" else 0
        return y[start:start + n_samples], n_samples
    return np.concatenate([y, np.zeros(n_samples - n, dtype=y.dtype)]), n


def trim(y: np.ndarray, *, top_db: float, frame_length: int, hop_length: int) -> np.ndarray:
    """Cut leading and trailing frames whose RMS is more than ``top_db`` below the loudest
    frame's (``librosa.effects.trim``); silence is returned unchanged.

    >>> y = np.concatenate([np.zeros(8000), np.ones(1600) * 0.5, np.zeros(8000)]).astype(np.float32)
    >>> len(trim(y, top_db=40, frame_length=512, hop_length=160)) < 3000
    True
    """
    import librosa

    if not np.any(y):
        return y
    return librosa.effects.trim(y, top_db=top_db, frame_length=frame_length, hop_length=hop_length)[0]


def prepare(y: np.ndarray, *, config: FeatureConfig) -> tuple[np.ndarray, int]:
    """Trim leading and trailing silence (``config.trim_db``, if set), loudness-normalise a mono
    clip at ``config.sr`` (whole clip), then :func:`fix_length` it.

    Returns
    -------
    y_fixed : np.ndarray [shape=(config.n_samples,), dtype=float32]
    n_valid : int
        Samples of real audio (the rest is zero padding).
    """
    y = np.asarray(y, dtype=np.float32)
    if config.trim_db is not None:
        y = trim(y, top_db=config.trim_db, frame_length=config.n_fft, hop_length=config.hop_length)
    y = normalize_loudness(y, mode=config.loudness, target_dbfs=config.target_dbfs)
    return fix_length(y, n_samples=config.n_samples, crop=config.crop)
