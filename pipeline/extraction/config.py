"""What defines the features: :class:`FeatureConfig` (and its :class:`UtteranceConfig`),
validated on construction and saved in every model bundle, and the names of their columns."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline import voice
from pipeline.audio import LOUDNESS_MODES
from pipeline.params import ParamsError
from pipeline.schema import CROPS, SEQUENCE_FEATURES

DELTA_WIDTH = 9            # frames of the MFCC delta window (librosa.feature.delta default)


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
        if "ge2e" in self.sequence and self.hop_length * 100 != self.sr:
            raise _fail("hop_length", self.hop_length, f"gives {1000 * self.hop_length / self.sr:g} ms frames, but the "
                        f"sequence feature 'ge2e' (the voice encoder's 10 ms frames) needs hop_length = sr / 100; "
                        + (f"set hop_length to {self.sr // 100} or drop 'ge2e' from features.sequence"
                           if self.sr % 100 == 0 else
                           f"base.sample_rate={self.sr} is not a multiple of 100 Hz, so set it to one (e.g. 16000, "
                           f"hop_length 160) or drop 'ge2e' from features.sequence"))
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
        from pipeline.extraction.banks import mel_bank   # banks imports this module

        for key, n in (("n_mels", self.n_mels), ("utterance.n_mels", self.utterance.n_mels)):
            empty = int((mel_bank(self.sr, self.n_fft, n).max(axis=1) == 0).sum())
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
        return [name for feat in self.sequence for name in self._names_of(feat)]

    def _names_of(self, feat: str) -> list[str]:
        if feat == "logmel":
            return _numbered("logmel", self.n_mels)
        if feat == "mfcc":
            return _numbered("mfcc", self.n_mfcc) + (_numbered("d_mfcc", self.n_mfcc) if self.mfcc_deltas else [])
        if feat == "pitch":
            return ["f0_semitones", "voicing"]
        if feat == "ge2e":
            return voice.frame_names()
        return [feat]

    def columns(self, features: Sequence[str] | None, *, key: str = "features") -> np.ndarray | None:
        """Positions in :meth:`sequence_names` of the columns of ``features`` (some of
        ``sequence``; a model's ``models.<name>.sequence``), in this config's order; None for
        None (every column). Raises :class:`ParamsError` naming ``key`` for a feature not extracted."""
        if features is None:
            return None
        if missing := [f for f in features if f not in self.sequence]:
            raise ParamsError(f"params.yaml: {key}={list(features)!r} lists {missing[0]!r}, which features.sequence "
                              f"{list(self.sequence)!r} does not extract; add it to features.sequence or drop it here")
        out, start = [], 0
        for feat in self.sequence:
            width = len(self._names_of(feat))
            if feat in features:
                out += range(start, start + width)
            start += width
        return np.asarray(out, dtype=np.int64)

    def utterance_names(self) -> list[str]:
        """One name per column of ``extract(...)["utterance"]``, e.g. ``mfcc_mean_00``, ``rms_mean``."""
        u = self.utterance
        return (_numbered("mfcc_mean", u.n_mfcc) + (_numbered("mfcc_std", u.n_mfcc) if u.std else [])
                + _numbered("chroma_mean", u.n_chroma) + _numbered("mel_mean", u.n_mels)
                + ["centroid_mean", "rolloff_mean", "bandwidth_mean", "zcr_mean", "rms_mean"])


def _numbered(prefix: str, n: int) -> list[str]:
    width = max(2, len(str(n - 1)))
    return [f"{prefix}_{i:0{width}d}" for i in range(n)]


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
