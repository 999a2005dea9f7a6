"""Per-clip descriptors by feature kind: openSMILE's functionals (:mod:`pipeline.egemaps`:
``functionals`` = eGeMAPSv02, ``compare`` = ComParE_2016) and the GE2E voice encoder's features
(:mod:`pipeline.voice`: ``ge2e``). One vector per clip, from the clip's real audio as prepared for
the frame features; the ``functionals`` stage writes each kind to its own folder, and inference
computes them the same way (:mod:`pipeline.infer`)."""
from __future__ import annotations

import numpy as np

from pipeline import egemaps, voice

FEATURE_SETS = {**egemaps.FEATURE_SETS, "ge2e": "GE2E voice encoder (Resemblyzer weights), LSTM layer 2 mean"}
KINDS = tuple(FEATURE_SETS)


def names(kind: str) -> list[str]:
    """The column names of ``kind``, in the order of :func:`describe`'s columns."""
    return voice.names() if kind == "ge2e" else egemaps.names(kind)


def describe(Y: np.ndarray, n_valid: np.ndarray, *, sr: int, kind: str) -> np.ndarray:
    """(batch, len(names(kind))) float32 descriptors of ``kind`` of each clip's real audio."""
    if kind == "ge2e":
        return voice.ge2e(Y, n_valid, sr=sr)
    return egemaps.egemaps(Y, n_valid, sr=sr, kind=kind)
