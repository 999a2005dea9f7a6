"""Frame sequences and utterance vectors from fixed-length clips, all from one STFT.

Pure functions, arrays in and arrays out (file I/O lives in :mod:`pipeline.features`).
A batch of clips at ``config.sr`` is cropped or zero-padded to ``config.seconds``
(:func:`prepare`), then :func:`extract` frames the whole batch once (``center=True``,
zero padding, periodic Hann window of ``win_length`` centred in ``n_fft``, as
``librosa.stft``), takes one real FFT and one power spectrogram ``S``, and derives:

- sequence features, per frame, concatenated in ``config.sequence`` order:
  ``logmel`` = ``10 * log10(max(mel @ S, 1e-10))`` in absolute dB (no ``ref``, no
  ``top_db``, so values are comparable across clips); ``mfcc`` = DCT-II (ortho) of that
  log-mel, i.e. ``librosa.feature.mfcc(S=logmel)``; optional ``d_mfcc`` (``librosa.feature.delta``,
  width 9); ``zcr`` and ``rms`` over ``n_fft``-sample frames, equal to
  ``librosa.feature.zero_crossing_rate`` and ``librosa.feature.rms`` with ``center=True``.
- the utterance vector, averaged over the frames that hold real audio: MFCC mean (and std),
  chroma mean (``chroma_stft``, tuning 0), mel power mean, spectral centroid, roll-off (0.85)
  and bandwidth (p=2) from the magnitude ``sqrt(S)``, ZCR and RMS -- the write-ups' vector
  (their recipe: :file:`seed_features.py`) computed from the same single STFT. Its MFCCs use
  the utterance mel bank (``utterance.n_mels`` bands, 128 as in ``librosa.feature.mfcc``).

Frames are numbered like librosa: frame ``t`` is centred on sample ``t * hop_length``.

Examples
--------
>>> config = FeatureConfig.from_params(params["features"], sr=16000)        # doctest: +SKIP
>>> y_fixed, n_valid = prepare(audio.load("clip.wav", sr=config.sr), config=config)  # doctest: +SKIP
>>> out = extract(y_fixed[None], [n_valid], config=config)                  # doctest: +SKIP
>>> out["sequence"].shape, out["utterance"].shape                          # doctest: +SKIP
((1, 301, 106), (1, 225))
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import scipy.fft
import scipy.signal

from pipeline.audio import LOUDNESS_MODES, normalize_loudness
from pipeline.params import ParamsError

SEQUENCE_FEATURES = ("logmel", "mfcc", "zcr", "rms")
CROPS = ("centre", "start")
LOG_FLOOR = 1e-10          # power floor before log10: -100 dB
ROLL_PERCENT = 0.85
DELTA_WIDTH = 9
ZC_THRESHOLD = 1e-10       # |y| at or below this counts as 0, as in librosa.zero_crossings
_BLOCK_CLIPS = 16          # clips per internal block: bounds memory, keeps arrays cache-sized
_ROLL_BLOCK = 16           # frequency bins per block in the two-level roll-off search
_TINY = np.finfo(np.float32).tiny


def _fail(key: str, value: Any, rule: str) -> ParamsError:
    return ParamsError(f"params.yaml: features.{key}={value!r} {rule}")


def _int(value: Any, *, key: str, low: int = 1, high: int | None = None, high_name: str = "") -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise _fail(key, value, "must be an integer")
    if value < low or (high is not None and value > high):
        rule = f"must be an integer >= {low}" + (f" and <= {high_name or high}" if high is not None else "")
        raise _fail(key, value, rule)
    return int(value)


def _bool(value: Any, *, key: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, value, "must be true or false")
    return value


@dataclass(frozen=True, kw_only=True)
class UtteranceConfig:
    """The utterance vector: sizes of its MFCC, chroma and mel parts, and whether MFCC std is kept."""

    n_mfcc: int
    n_chroma: int
    n_mels: int
    std: bool

    def __post_init__(self) -> None:
        _int(self.n_mels, key="utterance.n_mels")
        _int(self.n_mfcc, key="utterance.n_mfcc", high=self.n_mels, high_name=f"utterance.n_mels={self.n_mels}")
        _int(self.n_chroma, key="utterance.n_chroma")
        _bool(self.std, key="utterance.std")


@dataclass(frozen=True, kw_only=True)
class FeatureConfig:
    """Everything that defines the features; saved in model bundles (:meth:`to_dict`).

    Build it with :meth:`from_params` (the ``features`` section) or :meth:`from_dict` (a saved
    config). Every value is checked on construction; a bad one raises
    :class:`~pipeline.params.ParamsError` naming the key, the rule and the valid choices.
    """

    sr: int                    # Hz, the rate clips are loaded at (base.sample_rate)
    seconds: float             # fixed clip length after crop / zero-pad
    crop: str                  # centre | start: which part of a longer clip to keep
    loudness: str              # none | peak | rms (pipeline.audio.normalize_loudness)
    target_dbfs: float         # loudness target, dBFS
    n_fft: int                 # FFT size, samples
    win_length: int            # Hann window length, samples (<= n_fft)
    hop_length: int            # samples between frame centres
    sequence: tuple[str, ...]  # frame features in column order, from SEQUENCE_FEATURES
    n_mels: int                # mel bands of the sequence log-mel (and its MFCCs)
    n_mfcc: int                # sequence MFCCs
    mfcc_deltas: bool          # append first-order deltas after the sequence MFCCs
    utterance: UtteranceConfig
    trim_db: float | None = None   # cut leading/trailing audio this many dB below the clip's loudest frame; None: off

    def __post_init__(self) -> None:
        if isinstance(self.sequence, list):
            object.__setattr__(self, "sequence", tuple(self.sequence))
        if isinstance(self.utterance, Mapping):
            object.__setattr__(self, "utterance", UtteranceConfig(**self.utterance))
        _int(self.sr, key="sr (base.sample_rate)")
        if not isinstance(self.seconds, (int, float)) or isinstance(self.seconds, bool) or not self.seconds > 0:
            raise _fail("seconds", self.seconds, "must be a number > 0")
        if self.crop not in CROPS:
            raise _fail("crop", self.crop, f"is not valid; choose one of {list(CROPS)}")
        if self.loudness not in LOUDNESS_MODES:
            raise _fail("loudness", self.loudness, f"is not valid; choose one of {list(LOUDNESS_MODES)}")
        if (not isinstance(self.target_dbfs, (int, float)) or isinstance(self.target_dbfs, bool)
                or not math.isfinite(self.target_dbfs) or self.target_dbfs > 0):
            raise _fail("target_dbfs", self.target_dbfs, "must be a number <= 0 (dB relative to full scale)")
        if self.trim_db is not None and (not isinstance(self.trim_db, (int, float)) or isinstance(self.trim_db, bool)
                                         or not 0 < self.trim_db < 200):
            raise _fail("trim_db", self.trim_db, "must be null (no trimming) or a number of dB in (0, 200), e.g. 40")
        _int(self.n_fft, key="n_fft", low=2)
        _int(self.win_length, key="win_length", high=self.n_fft, high_name=f"n_fft={self.n_fft}")
        _int(self.hop_length, key="hop_length")
        if self.n_samples < self.n_fft:
            raise _fail("seconds", self.seconds, f"gives {self.n_samples} samples at {self.sr} Hz, fewer than "
                        f"n_fft={self.n_fft}; raise seconds or lower n_fft")
        if not isinstance(self.sequence, tuple) or not self.sequence:
            raise _fail("sequence", self.sequence, f"must be a non-empty list drawn from {list(SEQUENCE_FEATURES)}")
        for name in self.sequence:
            if name not in SEQUENCE_FEATURES:
                raise _fail("sequence", list(self.sequence),
                            f"lists {name!r}, which is not a sequence feature; choose from {list(SEQUENCE_FEATURES)}")
        if len(set(self.sequence)) != len(self.sequence):
            raise _fail("sequence", list(self.sequence), "lists a feature twice")
        _int(self.n_mels, key="n_mels")
        _int(self.n_mfcc, key="n_mfcc", high=self.n_mels, high_name=f"n_mels={self.n_mels}")
        _bool(self.mfcc_deltas, key="mfcc_deltas")
        if self.mfcc_deltas and "mfcc" not in self.sequence:
            raise _fail("mfcc_deltas", True, "needs 'mfcc' in features.sequence; add it or set mfcc_deltas: false")
        if self.mfcc_deltas and self.n_frames < DELTA_WIDTH:
            raise _fail("mfcc_deltas", True, f"needs at least {DELTA_WIDTH} frames per clip, got {self.n_frames}; "
                        "raise seconds or lower hop_length")
        if not isinstance(self.utterance, UtteranceConfig):
            raise _fail("utterance", self.utterance, "must be a mapping {n_mfcc, n_chroma, n_mels, std}")
        for key, n in (("n_mels", self.n_mels), ("utterance.n_mels", self.utterance.n_mels)):
            empty = int((_mel_bank(self.sr, self.n_fft, n).max(axis=1) == 0).sum())
            if empty:
                raise _fail(key, n, f"leaves {empty} mel filters empty with n_fft={self.n_fft} at {self.sr} Hz; "
                            "lower n_mels or raise n_fft")

    # -- construction and serialisation -------------------------------------------------------
    @classmethod
    def from_params(cls, features: Mapping[str, Any], *, sr: int) -> FeatureConfig:
        """Build from the ``features`` params section (extra keys such as ``out``, ``dtype``,
        ``chunk_size`` and ``workers`` belong to the stage and are ignored)."""
        required = ("seconds", "crop", "loudness", "target_dbfs", "n_fft", "win_length", "hop_length",
                    "sequence", "n_mels", "n_mfcc", "mfcc_deltas", "utterance")
        for key in required:
            if key not in features:
                raise ParamsError(f"params.yaml: missing key 'features.{key}'; add it (see params.yaml)")
        utt = features["utterance"]
        if not isinstance(utt, Mapping):
            raise _fail("utterance", utt, "must be a mapping {n_mfcc, n_chroma, n_mels, std}")
        valid = ("n_mfcc", "n_chroma", "n_mels", "std")
        for key in valid:
            if key not in utt:
                raise ParamsError(f"params.yaml: missing key 'features.utterance.{key}'; add it (see params.yaml)")
        for key in utt:
            if key not in valid:
                raise _fail(f"utterance.{key}", utt[key], f"is not a known key; use {list(valid)}")
        seq = features["sequence"]
        if not isinstance(seq, (list, tuple)):
            raise _fail("sequence", seq, f"must be a list drawn from {list(SEQUENCE_FEATURES)}")
        kwargs = {key: features[key] for key in required if key not in ("sequence", "utterance")}
        return cls(sr=sr, sequence=tuple(seq), utterance=UtteranceConfig(**{k: utt[k] for k in valid}),
                   trim_db=features.get("trim_db"), **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureConfig:
        """Rebuild (and re-validate) a config saved with :meth:`to_dict`."""
        if "sr" not in d:
            raise ParamsError("feature config: missing key 'sr'; was it saved with FeatureConfig.to_dict()?")
        return cls.from_params(d, sr=d["sr"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field; :meth:`from_dict` gives back an equal config."""
        d = asdict(self)
        d["sequence"] = list(self.sequence)
        return d

    # -- derived sizes and names ---------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        """Samples per fixed-length clip: ``round(seconds * sr)``."""
        return int(round(self.seconds * self.sr))

    @property
    def n_frames(self) -> int:
        """Frames per fixed-length clip (``center=True``): ``1 + n_samples // hop_length`` for even n_fft."""
        return n_valid_frames(self.n_samples, config=self)

    def sequence_names(self) -> list[str]:
        """One name per column of ``extract(...)["sequence"]``, e.g. ``logmel_00``, ``mfcc_39``, ``zcr``."""
        names: list[str] = []
        for feat in self.sequence:
            if feat == "logmel":
                names += _numbered("logmel", self.n_mels)
            elif feat == "mfcc":
                names += _numbered("mfcc", self.n_mfcc)
                if self.mfcc_deltas:
                    names += _numbered("d_mfcc", self.n_mfcc)
            else:
                names.append(feat)
        return names

    def utterance_names(self) -> list[str]:
        """One name per column of ``extract(...)["utterance"]``, e.g. ``mfcc_mean_00``, ``rms_mean``."""
        u = self.utterance
        return (_numbered("mfcc_mean", u.n_mfcc) + (_numbered("mfcc_std", u.n_mfcc) if u.std else [])
                + _numbered("chroma_mean", u.n_chroma) + _numbered("mel_mean", u.n_mels)
                + ["centroid_mean", "rolloff_mean", "bandwidth_mean", "zcr_mean", "rms_mean"])


def _numbered(prefix: str, n: int) -> list[str]:
    width = max(2, len(str(n - 1)))
    return [f"{prefix}_{i:0{width}d}" for i in range(n)]


# -- filter banks, built once per setting ---------------------------------------------------------
def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (``librosa.hz_to_mel(htk=False)``): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    linear = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), linear)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), (200.0 / 3) * m)


@functools.lru_cache(maxsize=16)
def _mel_bank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney mel filter bank, shape (n_mels, 1 + n_fft // 2), float64: ``librosa.filters.mel``
    with its defaults (fmin 0, fmax sr/2, Slaney scale and area normalisation), ported to
    NumPy so that extraction does not pay librosa's lazy imports (about 1 CPU-s per process)."""
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    bank = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (mel_hz[2:n_mels + 2] - mel_hz[:n_mels]))[:, None]
    bank.flags.writeable = False
    return bank


def _chroma_bank(*, sr: int, n_fft: int, n_chroma: int) -> np.ndarray:
    """Chroma filter bank (n_chroma, 1 + n_fft // 2), float64: ``librosa.filters.chroma`` with
    tuning 0 and its defaults (ctroct 5, octwidth 2, norm 2, base_c), ported to NumPy because
    librosa's version spends about 0.7 CPU-s compiling numba code on first use."""
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    frqbins = n_chroma * np.log2(frequencies / (440.0 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = round(float(n_chroma) / 2)
    d = np.remainder(d + half + 10 * n_chroma, n_chroma) - half
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    wts /= np.maximum(np.sqrt(np.sum(wts ** 2, axis=0, keepdims=True)), np.finfo(np.float64).tiny)
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - 5.0) / 2.0) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : 1 + n_fft // 2])


def _pad_center(w: np.ndarray, *, size: int) -> np.ndarray:
    """``w`` zero-padded on both sides to ``size`` (``librosa.util.pad_center``), float32."""
    lpad = (size - len(w)) // 2
    return np.pad(w, (lpad, size - len(w) - lpad)).astype(np.float32)


def _mfcc(logmel: np.ndarray, n_mfcc: int) -> np.ndarray:
    """DCT-II (ortho) of log-mel frames, first ``n_mfcc`` coefficients (``librosa.feature.mfcc``),
    computed in float32.

    pocketfft, not a matrix product: a product with a DCT matrix sums in the BLAS kernel's
    order, and for flat spectra (silence, padding) the coefficients are pure cancellation,
    so another CPU would give other values (even other signs) there."""
    return scipy.fft.dct(logmel.astype(np.float32), type=2, norm="ortho", axis=-1)[..., :n_mfcc]


@dataclass(frozen=True)
class _Kernels:
    window: np.ndarray       # (n_fft,) periodic Hann of win_length, zero-padded to the centre
    bands: tuple             # (first, stop, lo, hi, weights (hi - lo, stop - first)) per group of
                             # band columns: mel (seq), mel (utt), chroma; filters are zero outside lo:hi
    n_bands: int             # n_mels + utterance.n_mels + n_chroma
    moments: np.ndarray      # (F rounded up to whole roll-off blocks, 3 + n_blocks): [1, f, f**2, block sums]
    freqs: np.ndarray        # (F,) Hz


@functools.lru_cache(maxsize=8)
def _kernels(config: FeatureConfig) -> _Kernels:
    u = config.utterance
    chroma = _chroma_bank(sr=config.sr, n_fft=config.n_fft, n_chroma=u.n_chroma)
    bands = np.concatenate([_mel_bank(config.sr, config.n_fft, config.n_mels),
                            _mel_bank(config.sr, config.n_fft, u.n_mels), chroma]).T
    freqs = np.fft.rfftfreq(config.n_fft, d=1.0 / config.sr)
    return _Kernels(
        window=_pad_center(scipy.signal.get_window("hann", config.win_length, fftbins=True), size=config.n_fft),
        bands=_band_groups(bands),
        n_bands=bands.shape[1],
        moments=_moments(freqs),
        freqs=freqs,
    )


def _band_groups(bank: np.ndarray, *, width: int = 16) -> tuple:
    """Split a (F, n_bands) filter bank into groups of ``width`` columns, each with the bin
    range outside which all its filters are zero. Mel filters are narrow, so the grouped
    product reads about a fifth of what a dense ``S @ bank`` does."""
    groups = []
    for first in range(0, bank.shape[1], width):
        cols = bank[:, first:first + width]
        rows = np.flatnonzero(np.any(cols != 0, axis=1))
        lo, hi = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)
        groups.append((first, first + cols.shape[1], lo, hi, np.ascontiguousarray(cols[lo:hi])))
    return tuple(groups)


def _project(S: np.ndarray, *, kernels: _Kernels) -> np.ndarray:
    """``S @ bank`` for power spectrograms ``S`` (B, T, F): (B, T, n_bands) float64.

    The product is one matrix product per clip (a stacked matmul), never one over the
    batch's frames flattened: BLAS rounding depends on the row count, and a clip's features
    must not depend on which clips share its batch. It is float64 (as every product here):
    see "Same bits on any CPU" in :func:`extract`.
    """
    out = np.empty(S.shape[:2] + (kernels.n_bands,), dtype=np.float64)
    for first, stop, lo, hi, weights in kernels.bands:
        np.matmul(S[..., lo:hi], weights, out=out[..., first:stop])
    return out


def _moments(freqs: np.ndarray) -> np.ndarray:
    """(F padded to whole blocks, 3 + n_blocks) float64: columns 1, f, f**2, then one indicator
    column per block of ``_ROLL_BLOCK`` bins; padding rows are zero."""
    n_blocks = -(-len(freqs) // _ROLL_BLOCK)
    m = np.zeros((n_blocks * _ROLL_BLOCK, 3 + n_blocks))
    m[:len(freqs), :3] = np.stack([np.ones_like(freqs), freqs, freqs**2], axis=1)
    for b in range(n_blocks):
        m[b * _ROLL_BLOCK:(b + 1) * _ROLL_BLOCK, 3 + b] = 1.0
    return m


# -- waveform preparation ----------------------------------------------------------------------
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


def n_valid_frames(n_valid: int | np.ndarray, *, config: FeatureConfig) -> np.ndarray | int:
    """Frames that hold real audio when a clip has ``n_valid`` samples (int or int array).

    The frame count ``librosa.stft(center=True)`` gives for the unpadded clip
    (``1 + n_valid // hop_length`` for even ``n_fft``), and 0 for no samples; for
    ``n_valid = config.n_samples`` it is ``config.n_frames``.
    """
    n = np.asarray(n_valid, dtype=np.int64)
    half = config.n_fft // 2
    frames = np.where(n > 0, 1 + (n + 2 * half - config.n_fft) // config.hop_length, 0)
    if n.ndim == 0:
        return int(frames)
    return frames.astype(np.int32)


# -- extraction ----------------------------------------------------------------------------------
def extract(Y: np.ndarray, n_valid: np.ndarray, *, config: FeatureConfig) -> dict[str, np.ndarray]:
    """Sequence features and utterance vectors for a batch of fixed-length clips.

    Parameters
    ----------
    Y : np.ndarray [shape=(batch, config.n_samples)]
        Mono clips at ``config.sr`` Hz, loudness-normalised and fixed in length (:func:`prepare`).
    n_valid : array-like of int [shape=(batch,)]
        Samples of real audio at the start of each clip (the rest is zero padding).
    config : FeatureConfig

    Returns
    -------
    dict
        ``"sequence"``: float32 (batch, config.n_frames, len(config.sequence_names()));
        ``"utterance"``: float32 (batch, len(config.utterance_names())), averaged over the
        first ``n_frames`` frames only; ``"n_frames"``: int32 (batch,), frames that hold real
        audio. Every value is finite, also for silent or all-padding clips.

    Notes
    -----
    Clips are processed in blocks of 16, so memory is bounded whatever the batch size.
    Two process-wide settings keep the CPU cost down: BLAS runs on one thread while
    ``extract`` runs (restored afterwards), and on glibc freed memory is kept for reuse
    (set once; see ``_keep_freed_memory``). A clip's features are bit-identical whatever
    the batch it is in (every matrix product is per clip; see ``_project``).

    Same bits on any CPU: OpenBLAS and NumPy pick kernels at run time by CPU (AVX2, AVX-512,
    ...), and kernels sum in different orders, so float32 products would differ in the last
    bits from one machine to another. Every product, mean and logarithm here is computed in
    float64 and rounded to float32 only at the end (the FFT and the MFCC DCT are pocketfft's,
    in float32: pocketfft has no run-time dispatch): the kernels' float64 differences (about
    1e-16 relative) are far below float32's and float16's rounding steps, so the stored
    features are identical across
    OpenBLAS core types and NumPy CPU features (``tests/test_portable.py``).
    """
    Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim != 2 or Y.shape[1] != config.n_samples:
        raise ValueError(f"expected clips of shape (batch, {config.n_samples}) "
                         f"({config.seconds} s at {config.sr} Hz), got {Y.shape}; use prepare() first")
    n_valid = np.asarray(n_valid).reshape(-1)
    if len(n_valid) != len(Y) or np.any(n_valid < 0) or np.any(n_valid > config.n_samples):
        raise ValueError(f"n_valid must hold {len(Y)} sample counts in [0, {config.n_samples}], got {n_valid!r}")
    n_frames = np.minimum(n_valid_frames(n_valid, config=config), config.n_frames).astype(np.int32)
    if not np.all(np.isfinite(Y)):
        raise ValueError("clips contain NaN or inf samples; check the decoder output")
    _keep_freed_memory()
    sequence = np.empty((len(Y), config.n_frames, len(config.sequence_names())), dtype=np.float32)
    utterance = np.empty((len(Y), len(config.utterance_names())), dtype=np.float32)
    with _one_blas_thread():
        for start in range(0, len(Y), _BLOCK_CLIPS):
            stop = start + _BLOCK_CLIPS
            _extract_block(Y[start:stop], n_frames[start:stop], config=config,
                           sequence=sequence[start:stop], utterance=utterance[start:stop])
    return {"sequence": sequence, "utterance": utterance, "n_frames": n_frames}


@functools.lru_cache(maxsize=1)
def _keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the OS.

    Each block allocates and frees a few tens of MB of temporaries; with glibc's defaults
    they are unmapped or trimmed after every block and page-faulted back in by the next,
    which costs about as much CPU as the features themselves. Process-wide, set once:
    arrays up to 32 MB come from the heap, and freed heap is not trimmed. Returns False
    (and changes nothing) where mallopt is not available.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3            # from glibc's <malloc.h>
        return bool(libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_mmap_threshold, 32 << 20))
    except (OSError, AttributeError):
        return False


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional: without it BLAS keeps its own thread count
        return None
    return ThreadpoolController()


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """Run the (small) matrix products on one BLAS thread: extra OpenBLAS threads spin and
    cost more CPU than they save here; parallelism comes from worker processes instead.
    The limit is process-wide while :func:`extract` runs and restored afterwards."""
    controller = _blas_controller()
    return controller.limit(limits=1, user_api="blas") if controller else contextlib.nullcontext()


def power_spectrogram(Y: np.ndarray, *, config: FeatureConfig) -> np.ndarray:
    """``|STFT|**2`` of a batch, as ``librosa.stft(center=True, pad_mode="constant")``.

    Parameters
    ----------
    Y : np.ndarray [shape=(batch, n_samples)], float32

    Returns
    -------
    S : np.ndarray [shape=(batch, n_frames, 1 + n_fft // 2)], float32
        Note the time-major layout (librosa's is (..., freq, time)). pocketfft has no run-time
        CPU dispatch and element-wise float32 arithmetic is correctly rounded under any SIMD
        width, so ``S`` is the same on every CPU.
    """
    k = _kernels(config)
    half, n = config.n_fft // 2, Y.shape[1]
    padded = np.zeros((len(Y), n + 2 * half), dtype=np.float32)
    padded[:, half:half + n] = Y
    n_frames = 1 + (n + 2 * half - config.n_fft) // config.hop_length
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft, axis=1)
    X = scipy.fft.rfft(frames[:, ::config.hop_length][:, :n_frames] * k.window, axis=-1, overwrite_x=True)
    S = X.real**2
    S += X.imag**2
    return S


def _extract_block(Y: np.ndarray, n_frames: np.ndarray, *, config: FeatureConfig,
                   sequence: np.ndarray, utterance: np.ndarray) -> None:
    """Fill ``sequence`` and ``utterance`` (views into the outputs) for one block of clips."""
    k, u = _kernels(config), config.utterance
    power = power_spectrogram(Y, config=config)                   # (B, T, F) float32
    B, T, F = power.shape
    S = np.empty((B, T, k.moments.shape[0]))                      # float64 (products), F padded to whole
    S[..., :F] = power                                            # roll-off blocks with zeros
    S[..., F:] = 0.0
    del power
    bands = _project(S, kernels=k)                                # mel (seq), mel (utt), chroma
    mel = bands[..., :config.n_mels]
    mel_u = bands[..., config.n_mels:config.n_mels + u.n_mels]
    chroma = bands[..., config.n_mels + u.n_mels:]
    zcr, rms = _zcr_rms(Y, config=config)                          # (B, T) each

    # sequence features, written straight into the output columns
    logmel = _log_power(mel) if {"logmel", "mfcc"} & set(config.sequence) else None
    col = 0
    for feat in config.sequence:
        if feat == "logmel":
            sequence[..., col:col + config.n_mels] = logmel
            col += config.n_mels
        elif feat == "mfcc":
            mfcc = _mfcc(logmel, config.n_mfcc)
            sequence[..., col:col + config.n_mfcc] = mfcc
            col += config.n_mfcc
            if config.mfcc_deltas:
                sequence[..., col:col + config.n_mfcc] = scipy.signal.savgol_filter(
                    mfcc, DELTA_WIDTH, polyorder=1, deriv=1, axis=1, mode="interp")
                col += config.n_mfcc
        else:
            sequence[..., col] = zcr if feat == "zcr" else rms
            col += 1

    # utterance vector: statistics over the frames that hold real audio
    mask = (np.arange(T) < n_frames[:, None]).astype(np.float64)  # (B, T)
    count = np.maximum(n_frames, 1).astype(np.float64)[:, None]

    def mean(x: np.ndarray) -> np.ndarray:                        # (B, T, K) -> (B, K)
        return (mask[:, None, :] @ x)[:, 0, :] / count

    mfcc_u = _mfcc(_log_power(mel_u), u.n_mfcc)
    mfcc_mean = mean(mfcc_u)
    peak = chroma.max(axis=-1, keepdims=True)                    # chroma_stft: each frame's max -> 1
    chroma = chroma / np.where(peak < _TINY, 1.0, peak)
    centroid, bandwidth, rolloff = _spectral_shape(S, kernels=k)
    scalars = np.stack([x.reshape(B, T) for x in (centroid, rolloff, bandwidth)] + [zcr, rms], axis=-1)
    parts = [mfcc_mean]
    if u.std:
        dev = (mfcc_u - mfcc_mean[:, None, :]) * mask[..., None]
        parts.append(np.sqrt((dev * dev).sum(axis=1) / count))
    parts += [mean(chroma), mean(mel_u), mean(scalars)]
    utterance[:] = np.concatenate(parts, axis=1)


def _spectral_shape(S: np.ndarray, *, kernels: _Kernels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectral centroid, bandwidth (p=2) and roll-off (0.85) in Hz of each frame of ``S``
    (power, float64, shape (B, T, F) zero-padded to ``kernels.moments.shape[0]`` bins), from
    the magnitude ``sqrt(S)`` as ``librosa.feature.spectral_*``; three (B * T,) arrays.

    One skinny matmul gives, per frame, the magnitude sum, first and second frequency
    moments and the sums over blocks of ``_ROLL_BLOCK`` bins; roll-off then only runs a
    cumulative sum inside the one block where the 85 % point falls.
    """
    B, T, _ = S.shape
    n, F = B * T, len(kernels.freqs)
    mag = np.sqrt(S)
    sums = (mag @ kernels.moments).reshape(n, -1)                 # per clip (see _project): (n, 3 + n_blocks)
    m0, m1, m2, blocks = sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3:]
    ok = m0 >= _TINY                                              # librosa leaves all-zero frames at 0
    safe = np.where(ok, m0, 1.0)
    centroid = np.where(ok, m1 / safe, 0.0)
    bandwidth = np.where(ok, np.sqrt(np.maximum(m2 / safe - centroid**2, 0.0)), 0.0)
    # roll-off: first bin where the running sum reaches ROLL_PERCENT of the total
    running = np.cumsum(blocks, axis=1)
    threshold = ROLL_PERCENT * running[:, -1:]
    block = np.minimum((running < threshold).sum(axis=1), blocks.shape[1] - 1)
    before = np.where(block > 0, np.take_along_axis(running, np.maximum(block - 1, 0)[:, None], axis=1)[:, 0], 0.0)
    inside = np.take_along_axis(mag.reshape(n, -1, _ROLL_BLOCK), block[:, None, None], axis=1)[:, 0, :]
    within = ((before[:, None] + np.cumsum(inside, axis=1)) < threshold).sum(axis=1)
    rolloff = kernels.freqs[np.minimum(block * _ROLL_BLOCK + within, F - 1)]
    return centroid, bandwidth, rolloff


def _log_power(x: np.ndarray) -> np.ndarray:
    """``10 * log10(max(x, 1e-10))``: absolute dB, floor exactly -100 dB (float64 in, float64 out)."""
    out = np.log10(np.maximum(x, LOG_FLOOR))
    out *= 10.0
    return np.maximum(out, 10.0 * np.log10(LOG_FLOOR), out=out)


def _zcr_rms(Y: np.ndarray, *, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame zero-crossing rate and RMS over ``n_fft``-sample frames centred on
    ``t * hop_length``, from running sums (no framing).

    Equal to ``librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop_length)``
    (edge padding) and ``librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop_length)``
    (zero padding). Returns two float64 arrays of shape (batch, n_frames).
    """
    B, n = Y.shape
    half = config.n_fft // 2
    T = 1 + (n + 2 * half - config.n_fft) // config.hop_length
    lo = np.arange(T) * config.hop_length - half                 # first sample of each frame
    hi = lo + config.n_fft                                       # one past its last sample
    # Frame edges fall on multiples of g, so running sums over g-sample blocks are enough.
    g = math.gcd(config.hop_length, half, config.n_fft)
    nb = -(-n // g)
    negative = Y < -ZC_THRESHOLD                                 # |y| <= threshold counts as 0 (positive)
    crossed = np.zeros((B, nb * g), dtype=bool)                  # crossed[:, j]: sign of y[j-1] != y[j]
    np.not_equal(negative[:, 1:], negative[:, :-1], out=crossed[:, 1:n])
    squares = np.zeros((B, nb * g), dtype=np.float32)
    np.square(Y, out=squares[:, :n])
    zc_run = np.zeros((B, nb + 1), dtype=np.int32)
    np.cumsum(crossed.reshape(B, nb, g).sum(axis=-1, dtype=np.int32), axis=1, out=zc_run[:, 1:])
    energy_run = np.zeros((B, nb + 1), dtype=np.float64)
    np.cumsum(squares.reshape(B, nb, g).sum(axis=-1, dtype=np.float64), axis=1, out=energy_run[:, 1:])
    a, b = np.clip(lo, 0, nb * g) // g, np.clip(hi, 0, nb * g) // g
    # pairs inside a frame are (j-1, j) for lo < j < hi: drop the pair that straddles its first sample
    first = np.where((lo >= 0) & (lo < n), crossed[:, np.clip(lo, 0, n - 1)], False)
    zc = zc_run[:, b] - zc_run[:, a] - first
    power = (energy_run[:, b] - energy_run[:, a]) / config.n_fft
    return zc / config.n_fft, np.sqrt(np.maximum(power, 0.0))
