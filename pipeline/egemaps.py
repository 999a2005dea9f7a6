"""eGeMAPS functionals: the field's classic utterance descriptor, one vector per clip.

openSMILE's eGeMAPSv02 functionals (Eyben et al. 2016: 88 statistics of pitch, jitter,
shimmer, loudness, formants, spectral slope, MFCC 1-4 and more), computed by the
``opensmile`` package, whose binary ships inside its wheel (nothing is downloaded).

Pure function, arrays in and arrays out. The features stage and inference call it on exactly
the waveform the frame features see: the clip after loudness normalisation and cropping
(:func:`pipeline.extraction.prepare`), without the zero padding (``y_fixed[:n_valid]``), so a
clip gets the same vector in training and in ``ser predict``.

>>> import numpy as np
>>> y = np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32) * 0.1
>>> egemaps(y[None], np.array([16000]), sr=16000).shape
(1, 88)
"""
from __future__ import annotations

import functools
import sys

import numpy as np

FEATURE_SET = "eGeMAPSv02"
FEATURE_SETS = {"functionals": "eGeMAPSv02", "compare": "ComParE_2016"}
"""openSMILE functionals by the pipeline's feature kind: eGeMAPSv02 (88 per clip, the classic
baseline's) and ComParE_2016 (6,373 per clip: the INTERSPEECH ComParE challenge set, a brute-force
superset of LLDs and functionals, same openSMILE binary, about the same CPU per clip)."""
MIN_SAMPLES = 1600      # 0.1 s at 16 kHz: openSMILE needs a few frames; shorter clips are zero-padded


def preload(*, strict: bool = False) -> None:
    """Load openSMILE's native library now, before TensorFlow.

    In one process, openSMILE loaded *after* TensorFlow aborts at its first extraction
    (``malloc(): invalid size``; seen with tensorflow-cpu 2.21 and opensmile 2.6 on Linux),
    while the other order works. :mod:`pipeline.models` calls this before importing Keras.
    With TensorFlow already loaded it does nothing, or raises ``RuntimeError`` if ``strict``
    (what an extraction does, instead of letting the process abort).
    """
    if "opensmile" in sys.modules:
        return
    if "tensorflow" in sys.modules:
        if not strict:  # too late; only an extraction needs the order, and it calls preload(strict=True)
            return
        raise RuntimeError("openSMILE must be loaded before TensorFlow in one process (the other order aborts); "
                           "import pipeline.models or call pipeline.egemaps.preload() before importing keras")
    import opensmile  # noqa: F401


@functools.lru_cache(maxsize=4)
def _smile(kind: str = "functionals"):
    if kind not in FEATURE_SETS:
        raise ValueError(f"unknown functionals kind {kind!r}; choose one of {sorted(FEATURE_SETS)}")
    preload(strict=True)
    import opensmile

    return opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, FEATURE_SETS[kind]),
                           feature_level=opensmile.FeatureLevel.Functionals)


def names(kind: str = "functionals") -> list[str]:
    """The column names of ``kind`` (88 for eGeMAPS), in the order of :func:`egemaps`'s columns."""
    return list(_smile(kind).feature_names)


def egemaps(Y: np.ndarray, n_valid: np.ndarray, *, sr: int, kind: str = "functionals") -> np.ndarray:
    """eGeMAPSv02 functionals (or, with ``kind="compare"``, ComParE_2016's) of each clip's real audio.

    Parameters
    ----------
    Y : np.ndarray [shape=(batch, n_samples)]
        Mono clips at ``sr`` Hz (as from :func:`pipeline.extraction.prepare`).
    n_valid : array-like of int [shape=(batch,)]
        Samples of real audio at the start of each clip; the zero padding after them is
        left out (silence would bias every functional).
    sr : int
        Sample rate, Hz.

    Returns
    -------
    np.ndarray [shape=(batch, 88) (ComParE: 6373), dtype=float32]
        Finite values (a functional openSMILE cannot compute, e.g. on a clip without any
        voiced frame, is 0).
    """
    Y = np.asarray(Y, dtype=np.float32)
    n_valid = np.asarray(n_valid).reshape(-1)
    if Y.ndim != 2 or len(n_valid) != len(Y):
        raise ValueError(f"expected clips (batch, n_samples) and one n_valid per clip, got {Y.shape} and {n_valid.shape}")
    smile = _smile(kind)
    out = np.zeros((len(Y), len(smile.feature_names)), dtype=np.float32)
    for i, (y, n) in enumerate(zip(Y, n_valid, strict=True)):
        y = y[:max(int(n), 1)]
        if len(y) < MIN_SAMPLES:
            y = np.concatenate([y, np.zeros(MIN_SAMPLES - len(y), np.float32)])
        out[i] = smile.process_signal(y, sr).to_numpy(dtype=np.float32)[0]
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
