"""Speech presence: how many seconds of a waveform a voice-activity detector calls speech.

The detector is TEN VAD (PyPI ``ten-vad``; Apache 2.0 with conditions, see its licence): its
model is compiled into the library that ships in the wheel, so nothing is downloaded. It was
chosen by measuring five PyPI detectors (``benchmarks/vad_candidates.py``, README "Bad input"):
it is the only one that found speech in every real clip of ``../shared/corpora-dev`` (at
least 0.99 s in each of 3,024) while refusing noise, hum, tones, clicks, dither, silence and
DC; the Silero builds found no speech in ten high-arousal RAVDESS clips and WebRTC's GMM
calls loudness-normalised noise speech. Its library needs the C++ runtime ``libc++.so.1``
(Debian/Ubuntu: ``apt-get install libc++1``).

Input is mono float audio at 16 kHz (other rates are resampled), judged in 16 ms frames;
callers normalise loudness first, as the pipeline does before features.

Examples
--------
>>> p = speech_probabilities(y, sr=16000)                     # doctest: +SKIP
>>> speech_seconds(p)                                         # doctest: +SKIP
1.84
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from pipeline import audio

SR = 16000
HOP = 256                   # samples per decision: 16 ms at 16 kHz
FRAME_S = HOP / SR
THRESHOLD = 0.5             # a frame is speech when its probability is at least this


class VADError(RuntimeError):
    """The detector cannot run on this machine; the message says how to fix it."""


def _detector():
    """A fresh TEN VAD instance (it keeps state across frames and has no reset)."""
    try:
        import ten_vad
    except ImportError as err:
        raise VADError(f"the voice-activity detector is not installed ({err}); `pip install ten-vad`, or set "
                       "infer.min_speech_s: 0 to turn the speech check off") from None
    library = Path(ten_vad.__file__).parent / "lib" / "Linux" / "x64" / "libten_vad.so"
    if library.is_file():
        try:      # loaded here first: TenVad() would fail with an unclear assertion in __del__
            ctypes.CDLL(str(library))
        except OSError as err:
            raise VADError(f"TEN VAD's library cannot be loaded ({err}); install the C++ runtime (Debian/Ubuntu: "
                           "`apt-get install libc++1`), or set infer.min_speech_s: 0 to turn the speech check off") from None
    return ten_vad.TenVad(HOP, THRESHOLD)


def check() -> None:
    """Raise :class:`VADError` (with the fix) if the detector cannot run here: call it at
    start-up so that a missing library is a setup error, not every input's."""
    _detector()


def speech_probabilities(y: np.ndarray, *, sr: int) -> np.ndarray:
    """Speech probability of every 16 ms frame of ``y``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono float samples in [-1, 1] (clipped to it), at ``sr`` Hz.
    sr : int
        Sample rate of ``y``; resampled to 16 kHz when different.

    Returns
    -------
    np.ndarray [shape=(n_frames,), dtype=float32]
        ``n_frames = n_16k // 256``: the trailing partial frame is not judged.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got {y.shape}")
    if sr != SR:
        y = audio.resample(y, orig_sr=sr, target_sr=SR)
    x = np.round(np.clip(y, -1.0, 1.0) * 32767).astype(np.int16)
    n = len(x) // HOP
    out = np.empty(n, np.float32)
    if n:
        vad = _detector()
        for i in range(n):
            out[i] = vad.process(x[i * HOP:(i + 1) * HOP])[0]
    return out


def speech_seconds(p: np.ndarray, *, threshold: float = THRESHOLD) -> float:
    """Seconds of speech in frame probabilities ``p`` (frames at or over ``threshold``)."""
    return float(np.count_nonzero(np.asarray(p) >= threshold)) * FRAME_S
