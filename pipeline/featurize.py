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

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import librosa
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
_BLOCK_CLIPS = 32          # clips per internal block: bounds memory, keeps arrays cache-sized
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
        return cls(sr=sr, sequence=tuple(seq), utterance=UtteranceConfig(**{k: utt[k] for k in valid}), **kwargs)

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
@functools.lru_cache(maxsize=16)
def _mel_bank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney mel filter bank, shape (n_mels, 1 + n_fft // 2), float32 (``librosa.filters.mel``)."""
    bank = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, dtype=np.float32)
    bank.flags.writeable = False
    return bank


def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_in, n_out) float32 matrix M with ``x @ M == scipy.fft.dct(x, norm='ortho')[..., :n_out]``."""
    return scipy.fft.dct(np.eye(n_in), type=2, norm="ortho", axis=-1)[:, :n_out].astype(np.float32)


@dataclass(frozen=True)
class _Kernels:
    window: np.ndarray       # (win_length,) periodic Hann
    offset: int              # where the window starts inside an n_fft frame
    bands: np.ndarray        # (F, n_mels + utterance.n_mels + n_chroma): every S -> band projection
    dct_seq: np.ndarray      # (n_mels, n_mfcc)
    dct_utt: np.ndarray      # (utterance.n_mels, utterance.n_mfcc)
    moments: np.ndarray      # (F, 3): [1, f, f**2] for centroid and bandwidth
    freqs: np.ndarray        # (F,) Hz


@functools.lru_cache(maxsize=8)
def _kernels(config: FeatureConfig) -> _Kernels:
    u = config.utterance
    chroma = librosa.filters.chroma(sr=config.sr, n_fft=config.n_fft, tuning=0.0, n_chroma=u.n_chroma)
    bands = np.concatenate([_mel_bank(config.sr, config.n_fft, config.n_mels),
                            _mel_bank(config.sr, config.n_fft, u.n_mels), chroma]).T
    freqs = np.fft.rfftfreq(config.n_fft, d=1.0 / config.sr)
    return _Kernels(
        window=scipy.signal.get_window("hann", config.win_length, fftbins=True).astype(np.float32),
        offset=(config.n_fft - config.win_length) // 2,
        bands=np.ascontiguousarray(bands, dtype=np.float32),
        dct_seq=_dct_matrix(config.n_mels, config.n_mfcc),
        dct_utt=_dct_matrix(u.n_mels, u.n_mfcc),
        moments=np.stack([np.ones_like(freqs), freqs, freqs**2], axis=1).astype(np.float32),
        freqs=freqs.astype(np.float32),
    )


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


def prepare(y: np.ndarray, *, config: FeatureConfig) -> tuple[np.ndarray, int]:
    """Loudness-normalise a mono clip at ``config.sr`` (whole clip), then :func:`fix_length` it.

    Returns
    -------
    y_fixed : np.ndarray [shape=(config.n_samples,), dtype=float32]
    n_valid : int
        Samples of real audio (the rest is zero padding).
    """
    y = normalize_loudness(np.asarray(y, dtype=np.float32), mode=config.loudness, target_dbfs=config.target_dbfs)
    return fix_length(y, n_samples=config.n_samples, crop=config.crop)


def n_valid_frames(n_valid: int | np.ndarray, *, config: FeatureConfig) -> np.ndarray | int:
    """Frames (``center=True``) that hold real audio for ``n_valid`` samples: the frame count
    ``librosa.stft`` gives for the unpadded clip, 0 for no samples, at most ``config.n_frames``
    (computed from ``config.n_samples`` when called for the full clip)."""
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
    sequence = np.empty((len(Y), config.n_frames, len(config.sequence_names())), dtype=np.float32)
    utterance = np.empty((len(Y), len(config.utterance_names())), dtype=np.float32)
    for start in range(0, len(Y), _BLOCK_CLIPS):
        stop = start + _BLOCK_CLIPS
        _extract_block(Y[start:stop], n_frames[start:stop], config=config,
                       sequence=sequence[start:stop], utterance=utterance[start:stop])
    return {"sequence": sequence, "utterance": utterance, "n_frames": n_frames}


def power_spectrogram(Y: np.ndarray, *, config: FeatureConfig) -> np.ndarray:
    """``|STFT|**2`` of a batch, as ``librosa.stft(center=True, pad_mode="constant")``.

    Parameters
    ----------
    Y : np.ndarray [shape=(batch, n_samples)], float32

    Returns
    -------
    S : np.ndarray [shape=(batch, n_frames, 1 + n_fft // 2)], float32
        Note the time-major layout (librosa's is (..., freq, time)).
    """
    k = _kernels(config)
    half, n = config.n_fft // 2, Y.shape[1]
    padded = np.zeros((len(Y), n + 2 * half), dtype=np.float32)
    padded[:, half:half + n] = Y
    n_frames = 1 + (n + 2 * half - config.n_fft) // config.hop_length
    # Only the win_length samples under the window are framed; rfft zero-fills to n_fft.
    # That circularly shifts each frame by k.offset, which changes the phase only, not |X|.
    frames = np.lib.stride_tricks.sliding_window_view(padded[:, k.offset:], config.win_length, axis=1)
    frames = frames[:, ::config.hop_length][:, :n_frames] * k.window
    X = scipy.fft.rfft(frames, n=config.n_fft, axis=-1)
    S = X.real**2
    S += X.imag**2
    return S


def _extract_block(Y: np.ndarray, n_frames: np.ndarray, *, config: FeatureConfig,
                   sequence: np.ndarray, utterance: np.ndarray) -> None:
    """Fill ``sequence`` and ``utterance`` (views into the outputs) for one block of clips."""
    k, u = _kernels(config), config.utterance
    S = power_spectrogram(Y, config=config)                       # (B, T, F)
    B, T, F = S.shape
    bands = (S.reshape(B * T, F) @ k.bands).reshape(B, T, -1)     # mel (seq), mel (utt), chroma
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
            mfcc = logmel @ k.dct_seq
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
    mask = (np.arange(T) < n_frames[:, None]).astype(np.float32)  # (B, T)
    count = np.maximum(n_frames, 1).astype(np.float32)[:, None]

    def mean(x: np.ndarray) -> np.ndarray:                        # (B, T, K) -> (B, K)
        return (mask[:, None, :] @ x)[:, 0, :] / count

    mfcc_u = _log_power(mel_u) @ k.dct_utt
    mfcc_mean = mean(mfcc_u)
    chroma = chroma / np.where(chroma.max(axis=-1, keepdims=True) < _TINY, 1.0,
                               chroma.max(axis=-1, keepdims=True))
    mag = np.sqrt(S)
    m0, m1, m2 = np.moveaxis((mag.reshape(B * T, F) @ k.moments).reshape(B, T, 3), -1, 0)
    ok = m0 >= _TINY
    centroid = np.where(ok, m1 / np.where(ok, m0, 1.0), 0.0)
    bandwidth = np.where(ok, np.sqrt(np.maximum(m2 / np.where(ok, m0, 1.0) - centroid**2, 0.0)), 0.0)
    cum = np.cumsum(mag, axis=-1)
    rolloff = k.freqs[np.minimum((cum < ROLL_PERCENT * cum[..., -1:]).sum(axis=-1), F - 1)]
    scalars = np.stack([centroid, rolloff, bandwidth, zcr, rms], axis=-1).astype(np.float32)
    parts = [mfcc_mean]
    if u.std:
        dev = (mfcc_u - mfcc_mean[:, None, :]) * mask[..., None]
        parts.append(np.sqrt((dev * dev).sum(axis=1) / count))
    parts += [mean(chroma), mean(mel_u), mean(scalars)]
    utterance[:] = np.concatenate(parts, axis=1)


def _log_power(x: np.ndarray) -> np.ndarray:
    """``10 * log10(max(x, 1e-10))``: absolute dB, floor -100 dB."""
    return 10.0 * np.log10(np.maximum(x, np.float32(LOG_FLOOR)))


def _zcr_rms(Y: np.ndarray, *, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame zero-crossing rate and RMS over ``n_fft``-sample frames centred on
    ``t * hop_length``, from running sums (O(n), no framing).

    Equal to ``librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop_length)``
    (edge padding) and ``librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop_length)``
    (zero padding). Returns two float32 arrays of shape (batch, n_frames).
    """
    B, n = Y.shape
    T = 1 + (n + 2 * (config.n_fft // 2) - config.n_fft) // config.hop_length
    lo = np.arange(T) * config.hop_length - config.n_fft // 2     # first sample of each frame
    hi = lo + config.n_fft                                       # one past its last sample
    signs = np.signbit(np.where(np.abs(Y) <= ZC_THRESHOLD, np.float32(0), Y))
    crossings = np.zeros((B, n), dtype=np.int32)                 # crossings[:, j]: in y[1..j]
    np.cumsum(signs[:, 1:] != signs[:, :-1], axis=1, out=crossings[:, 1:])
    zc = crossings[:, np.clip(hi - 1, 0, n - 1)] - crossings[:, np.clip(lo, 0, n - 1)]
    energy = np.zeros((B, n + 1), dtype=np.float64)              # energy[:, j]: sum y[:j]**2
    np.cumsum(np.square(Y, dtype=np.float64), axis=1, out=energy[:, 1:])
    power = (energy[:, np.clip(hi, 0, n)] - energy[:, np.clip(lo, 0, n)]) / config.n_fft
    return (zc / config.n_fft).astype(np.float32), np.sqrt(np.maximum(power, 0.0)).astype(np.float32)
