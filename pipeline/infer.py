"""Inference from a model bundle alone: the exact preprocessing the model was trained with.

:class:`Predictor` rebuilds the feature config saved in the bundle and runs the same path as
the pipeline (decode → mono → resample → loudness → crop/pad → one-STFT features → storage
dtype → the bundle's scaler → model), so a clip gets the probabilities the evaluate stage
computed for it.

One answer per recording (:meth:`Predictor.predict_recording`, used by ``ser predict``, the
web app and the TensorFlow Lite predictor alike):

- Every input is checked first: decodable, finite, not constant, at least ``min_duration_s``
  long, not silent, and holding at least ``min_speech_s`` of speech by the voice-activity
  detector (:mod:`pipeline.vad`, after the bundle's loudness normalisation); otherwise
  :class:`InferenceError` ("no speech detected (0.00 s of speech)").
- Shorter than two ``window_s`` windows: one utterance, cropped (centre) or zero-padded to
  the model's ``features.seconds`` exactly as in training and evaluation (``basis="clip"``).
- Longer: the mean class probabilities over the :meth:`Predictor.timeline` windows
  (``window_s`` every ``hop_s``) that hold at least ``min_speech_s`` of speech
  (``basis="timeline"``); windows without speech are kept in the timeline, marked, and not
  predicted.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline import audio, bundle as B, params as P, vad, voice
from pipeline.balance import BalanceError, balance_fusion, check_clip_count
from pipeline.dataset import FUNCTIONAL_KINDS
from pipeline.descriptors import describe
from pipeline.extraction import FeatureConfig, extract, prepare


SPEAKER_NORM_HINT = ("this model normalises features per speaker (train.speaker_norm: true): give several clips "
                     "of one speaker together (`ser predict --one-speaker`), or use a model trained without it")


OUTSIDE_PROJECT: dict[str, float] = {"window_s": 3.0, "hop_s": 1.0, "min_speech_s": 0.3, "min_duration_s": 0.25,
                                     "max_duration_s": 600.0, "max_upload_mb": 20.0}
"""The ``infer`` settings where no params.yaml is at hand (``ser`` outside a project; a bare
:class:`Predictor`'s defaults, except that it bounds no duration unless given
``max_duration_s``): params.yaml's own values, which ``tests/test_webapp.py`` keeps equal."""


@dataclass(frozen=True, kw_only=True)
class InferSettings:
    """params.yaml's ``infer`` section, validated in one place: the inputs ``ser`` and the web
    app accept and how a timeline is cut. Build it with :meth:`from_params`; command-line flags
    override it with :meth:`replace` (validated again)."""

    window_s: float              # timeline window, seconds (> 0)
    hop_s: float                 # timeline hop, seconds (> 0)
    min_speech_s: float          # speech an input and a timeline window must hold (>= 0; 0: no check)
    min_duration_s: float        # shorter inputs are refused (> 0)
    max_duration_s: float | None  # longer inputs are refused (> 0; None: no limit)
    max_upload_mb: float         # web app upload limit (> 0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "max_duration_s" and value is None:
                continue
            P.positive(value, key=f"infer.{f.name}", allow_zero=f.name == "min_speech_s")

    @classmethod
    def from_params(cls, infer: Mapping[str, Any] | None) -> InferSettings:
        """From the ``infer`` section; a missing or unknown key is a :class:`~pipeline.params.ParamsError`."""
        infer = dict(infer or {})
        keys = [f.name for f in dataclasses.fields(cls)]
        if missing := [k for k in keys if k not in infer]:
            raise P.ParamsError(f"params.yaml: missing key 'infer.{missing[0]}'; add it (see params.yaml)")
        if unknown := sorted(set(infer) - set(keys)):
            raise P.ParamsError(f"params.yaml: infer has unknown key(s) {unknown}; valid keys are {keys}")
        if infer["max_duration_s"] is None:   # no limit only by an explicit flag (ser --max-duration 0)
            P.positive(None, key="infer.max_duration_s")
        return cls(**infer)

    @classmethod
    def outside_project(cls) -> InferSettings:
        return cls(**OUTSIDE_PROJECT)

    def replace(self, **changes: Any) -> InferSettings:
        """These settings with the given ones changed (None leaves a setting as it is)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def predictor_kwargs(self) -> dict[str, float | None]:
        """The :class:`Predictor` keyword arguments among these settings."""
        return {k: getattr(self, k) for k in ("min_duration_s", "max_duration_s", "window_s", "hop_s", "min_speech_s")}

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


class InferenceError(ValueError):
    """An input that cannot be predicted; the message names the file and the reason."""


class AudioTooLong(InferenceError):
    """An input longer than the predictor's ``max_duration_s``."""


@dataclass(frozen=True)
class Prediction:
    emotion: str
    confidence: float
    probabilities: dict[str, float]


class GraphCall:
    """``model(x, training=False)`` traced into one TensorFlow graph (once per input shape).

    The same numbers as the eager call, several times faster for one clip: an eager LSTM
    steps through time in Python (CNN-LSTM: about 300 ms eager, 5 ms traced). Any other
    attribute is the Keras model's.
    """

    def __init__(self, model) -> None:
        import tensorflow as tf

        self.model = model
        self._call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def __call__(self, x, training: bool = False):
        return self.model(x, training=True) if training else self._call(x)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["model"], name)


class Predictor:
    """Predictions from one bundle folder (``models/<model>/``).

    ``min_duration_s`` and ``silence_dbfs`` reject inputs the model cannot judge (defaults
    match the ingest stage's rules); ``max_duration_s`` bounds what a file may decode to
    (None: no bound), so that a small compressed file cannot claim hours of memory;
    ``min_speech_s`` is the speech an input (and a timeline window) must hold (0: no check);
    ``window_s`` and ``hop_s`` are the timeline's (the ``infer`` params' defaults).
    """

    def __init__(self, folder: str | Path, *, min_duration_s: float = OUTSIDE_PROJECT["min_duration_s"],
                 silence_dbfs: float = -60.0, max_duration_s: float | None = None,
                 min_speech_s: float = OUTSIDE_PROJECT["min_speech_s"], window_s: float = OUTSIDE_PROJECT["window_s"],
                 hop_s: float = OUTSIDE_PROJECT["hop_s"]):
        InferSettings.outside_project().replace(min_duration_s=min_duration_s, min_speech_s=min_speech_s,
                                                window_s=window_s, hop_s=hop_s)   # validated as the infer params
        self.folder = Path(folder)
        self.bundle = self._load_bundle(self.folder)
        self.speaker_norm = bool(self.bundle.speaker_norm)
        self.config = FeatureConfig.from_dict(self.bundle.feature_config)
        self.dtypes = self.bundle.feature_dtypes
        kinds = self.bundle.input_kinds    # the voice encoder's weights (its features or its frames):
        if "ge2e" in kinds or ("sequence" in kinds and "ge2e" in self.config.sequence):   # checked before any input
            try:
                voice.weights()
            except voice.VoiceError as err:
                raise InferenceError(str(err)) from None
        self.labels = list(self.bundle.labels)
        self.min_duration_s, self.silence_dbfs, self.max_duration_s = min_duration_s, silence_dbfs, max_duration_s
        self.min_speech_s, self.window_s, self.hop_s = min_speech_s, window_s, hop_s

    def _load_bundle(self, folder: Path) -> B.Bundle:
        """The bundle, its model called through :class:`GraphCall` (a subclass may run
        another runtime; ``pipeline.export.TFLitePredictor`` runs TensorFlow Lite)."""
        from pipeline.models import is_keras

        bundle = B.load(folder)
        for member in bundle.members.values() if isinstance(bundle, B.FusionBundle) else [bundle]:
            if is_keras(member.model):
                member.model = GraphCall(member.model)
        return bundle

    def _check(self, y: np.ndarray, name: str) -> np.ndarray | None:
        """Refuse what the model cannot judge; returns the detector's frame probabilities of
        ``y`` (None when ``min_speech_s`` is 0)."""
        duration_s = len(y) / self.config.sr
        if len(y) == 0:
            raise InferenceError(f"{name}: no audio samples")
        try:
            audio.check_samples(y, name=name)
        except audio.AudioError as err:
            raise InferenceError(str(err)) from None
        if duration_s < self.min_duration_s:
            raise InferenceError(f"{name}: too short ({duration_s:.3f} s); at least {self.min_duration_s} s is needed")
        peak = audio.peak_dbfs(y)
        if peak < self.silence_dbfs:
            raise InferenceError(f"{name}: silent (peak {peak:.1f} dBFS < {self.silence_dbfs} dBFS)")
        if self.min_speech_s <= 0:
            return None
        p = self.speech_probabilities(y)
        speech_s = vad.speech_seconds(p)
        if speech_s < self.min_speech_s:
            raise InferenceError(f"{name}: no speech detected ({speech_s:.2f} s of speech; at least "
                                 f"{self.min_speech_s:g} s is needed, infer.min_speech_s)")
        return p

    def speech_probabilities(self, y: np.ndarray) -> np.ndarray:
        """The detector's 16 ms frame probabilities of mono ``y`` at ``config.sr``, judged after
        the bundle's loudness normalisation (RMS to its target when the bundle has none), so a
        quiet recording is judged like a loud one."""
        mode = self.config.loudness if self.config.loudness != "none" else "rms"
        y = audio.normalize_loudness(np.asarray(y, np.float32), mode=mode, target_dbfs=self.config.target_dbfs)
        try:
            return vad.speech_probabilities(y, sr=self.config.sr)
        except vad.VADError as err:
            raise InferenceError(str(err)) from None

    def probabilities(self, clips: list[np.ndarray], *, one_speaker: bool = False, balance: bool = False,
                      classes: Sequence[str] | None = None) -> np.ndarray:
        """(n, n_classes) probabilities for mono clips at ``config.sr``, each handled as one
        utterance exactly as in training.

        A bundle trained with ``train.speaker_norm: true`` normalises each speaker's features
        with that speaker's own statistics: pass several clips of one speaker together with
        ``one_speaker=True`` (their statistics stand in for the speaker's); otherwise it is
        refused. ``one_speaker`` does nothing else for other bundles.

        ``balance=True`` (with ``one_speaker=True``, at least :data:`pipeline.balance.MIN_CLIPS`
        clips) is speaker-balanced decoding (:mod:`pipeline.balance`): the clips are taken to
        cover ``classes`` (default: every label of the bundle) about evenly; each model's
        probabilities are divided by their mean over the clips (a fusion's members one by one,
        then the fused probabilities), and the other classes get 0, as ``python -m
        pipeline.balance`` scores protocol predictions over each corpus's classes."""
        if self.speaker_norm and not one_speaker:
            raise InferenceError(SPEAKER_NORM_HINT)
        if balance and not one_speaker:
            raise InferenceError("speaker-balanced decoding needs one speaker's clips given together: pass "
                                 "one_speaker=True (`ser predict --one-speaker --balance`)")
        if classes is not None and not balance:
            raise InferenceError("classes only apply to speaker-balanced decoding: pass balance=True too")
        mask = self.class_mask(classes) if balance else None
        if balance:
            try:
                check_clip_count(len(clips))      # refused before any feature work
            except BalanceError as err:
                raise InferenceError(str(err)) from None
        fixed = [prepare(y, config=self.config) for y in clips]
        Y, n_valid = np.stack([f[0] for f in fixed]), np.array([f[1] for f in fixed])
        kinds, inputs = self.bundle.input_kinds, {}
        if {"sequence", "utterance"} & set(kinds):
            feats = extract(Y, n_valid, config=self.config)
            inputs.update({k: (feats[k], feats["n_frames"]) for k in kinds if k in feats})
        for kind in FUNCTIONAL_KINDS:     # openSMILE's eGeMAPS and ComParE functionals, the voice encoder's
            if kind in kinds:
                inputs[kind] = (describe(Y, n_valid, sr=self.config.sr, kind=kind), np.zeros(len(Y), np.int32))
        # rounded to the storage dtype, as the features and functionals stages stored them
        inputs = {k: (x.astype(self.dtypes[k]).astype(np.float32), n) for k, (x, n) in inputs.items()}
        speakers = ["speaker"] * len(clips) if self.speaker_norm else None
        if not balance:
            return self.bundle.predict_inputs(inputs, speakers=speakers)
        fusion = isinstance(self.bundle, B.FusionBundle)
        models, weights = (list(self.bundle.members.values()), self.bundle.weights) if fusion else ([self.bundle], [1.0])
        try:
            return balance_fusion([m.predict_inputs(inputs, speakers=speakers) for m in models], weights,
                                  ["speaker"] * len(clips), classes=mask)
        except BalanceError as err:
            raise InferenceError(str(err)) from None

    def class_mask(self, classes: Sequence[str] | None) -> np.ndarray:
        """bool (n_classes,): which of the bundle's labels ``classes`` names (None: all)."""
        if classes is None:
            return np.ones(len(self.labels), bool)
        if isinstance(classes, str) or not len(classes):
            raise InferenceError(f"classes must be a non-empty list of labels, e.g. {self.labels[:2]}, got {classes!r}")
        if unknown := sorted(set(classes) - set(self.labels)):
            raise InferenceError(f"class(es) {unknown} not among this model's labels {self.labels}; name some of those")
        return np.array([c in set(classes) for c in self.labels])

    def _prediction(self, p: np.ndarray) -> Prediction:
        i = int(np.argmax(p))
        return Prediction(self.labels[i], float(p[i]), {c: float(v) for c, v in zip(self.labels, p, strict=True)})

    def predict_waveform(self, y: np.ndarray, *, sr: int, name: str = "<audio>") -> Prediction:
        """The recording-level prediction of samples ``y`` (mono, or (n, channels)) at ``sr``."""
        y = np.asarray(y)
        if y.dtype.kind in "iu":   # integer PCM: to floats in [-1, 1], as audio.read gives them
            y = y.astype(np.float32) / float(np.iinfo(y.dtype).max + 1)
        y = audio.resample(audio.to_mono(y) if y.ndim > 1 else y, orig_sr=sr, target_sr=self.config.sr)
        return self.predict_recording(np.asarray(y, np.float32), name=name).prediction

    def decode(self, path: str | Path) -> np.ndarray:
        """Decode ``path`` to mono float32 at ``config.sr``, shape (n,), unchecked; errors
        (:class:`InferenceError`, :class:`AudioTooLong` over ``max_duration_s``) name the file."""
        try:
            return audio.load(path, sr=self.config.sr, max_duration_s=self.max_duration_s)
        except audio.AudioTooLong as err:
            raise AudioTooLong(str(err)) from None
        except audio.AudioError as err:
            raise InferenceError(str(err)) from None

    def load(self, path: str | Path) -> np.ndarray:
        """Decode ``path`` to mono at ``config.sr`` and check it: shape (n,), float32.

        Raises :class:`InferenceError` naming the file: not decodable audio, empty, silent,
        NaN, infinite or constant samples, shorter than ``min_duration_s``, no speech, or
        longer than ``max_duration_s`` (:class:`AudioTooLong`, a subclass).
        """
        y = self.decode(path)
        self._check(y, str(path))
        return y

    def predict_clips(self, clips: list[np.ndarray], *, one_speaker: bool = False, balance: bool = False,
                      classes: Sequence[str] | None = None) -> list[Prediction]:
        """One :class:`Prediction` per mono clip at ``config.sr``, each one utterance cropped or
        padded as in training (see :meth:`probabilities`)."""
        if not clips and not balance:
            return []
        return [self._prediction(p) for p in self.probabilities(clips, one_speaker=one_speaker, balance=balance,
                                                                  classes=classes)]

    def predict_file(self, path: str | Path) -> Prediction:
        """The recording-level prediction of an audio file (:meth:`predict_recording`)."""
        return self.predict_recording_file(path).prediction

    def predict_recording_file(self, path: str | Path) -> Recording:
        """:meth:`predict_recording` of an audio file, errors naming it."""
        return self.predict_recording(self.decode(path), name=str(path))

    def predict_recording(self, y: np.ndarray, *, name: str = "<audio>") -> Recording:
        """One answer for a mono recording at ``config.sr`` (the rule in the module docstring)."""
        p = self._check(y, name)
        win = int(round(self.window_s * self.config.sr))
        duration_s = len(y) / self.config.sr
        if len(y) < 2 * win:
            if self.speaker_norm:
                raise InferenceError(f"{name}: {SPEAKER_NORM_HINT}; or give a recording of at least "
                                     f"{2 * self.window_s:g} s of one speaker")
            return Recording(self._prediction(self.probabilities([y])[0]), basis="clip", duration_s=duration_s,
                             timeline=None)
        table = self._timeline(y, p)
        voiced = table[table.speech]
        if voiced.empty:
            raise InferenceError(f"{name}: no speech detected in any {self.window_s:g} s window (at least "
                                 f"{self.min_speech_s:g} s is needed, infer.min_speech_s)")
        mean = voiced[[f"p_{c}" for c in self.labels]].to_numpy(dtype=np.float64).mean(axis=0)
        return Recording(self._prediction(mean), basis="timeline", duration_s=duration_s, timeline=table)

    def timeline(self, y: np.ndarray, *, name: str = "<audio>") -> pd.DataFrame:
        """Emotion over time for a long mono recording at ``config.sr``.

        One row per ``window_s`` window every ``hop_s`` (one window if ``y`` is shorter):
        ``start_s, end_s, speech_s`` (seconds the detector calls speech), ``speech`` (at least
        ``min_speech_s``), and for speech windows ``emotion, confidence`` and a ``p_<label>``
        column per class (empty for the others). A speaker-normalised bundle takes the
        recording as one speaker (all its speech windows). Raises :class:`InferenceError` for
        input :meth:`load` would refuse.
        """
        return self._timeline(y, self._check(y, name))

    def _timeline(self, y: np.ndarray, p: np.ndarray | None) -> pd.DataFrame:
        sr = self.config.sr
        win, hop = int(round(self.window_s * sr)), int(round(self.hop_s * sr))
        starts = list(range(0, max(len(y) - win, 0) + 1, hop)) if len(y) >= win else [0]
        rows = []
        for s in starts:
            end = min(s + win, len(y))
            if p is None:
                speech_s = (end - s) / sr
            else:   # frames wholly inside the window
                first, last = -(-int(s * vad.SR / sr) // vad.HOP), int(end * vad.SR / sr) // vad.HOP
                speech_s = vad.speech_seconds(p[first:max(first, last)])
            rows.append((s, end, speech_s, speech_s >= self.min_speech_s and speech_s > 0))
        voiced = [(s, e) for s, e, _, ok in rows if ok]
        segments = [y[s:e] for s, e in voiced]
        if not segments:
            proba = np.zeros((0, len(self.labels)))
        elif self.speaker_norm:  # the recording is one speaker: every speech window gives the statistics
            proba = self.probabilities(segments, one_speaker=True)
        else:
            proba = np.concatenate([self.probabilities(segments[i:i + 64]) for i in range(0, len(segments), 64)])
        by_start = dict(zip([s for s, _ in voiced], proba, strict=True))
        out = []
        for s, e, speech_s, ok in rows:
            q = by_start.get(s) if ok else None
            pred = self._prediction(q) if q is not None else None
            out.append([s / sr, e / sr, round(speech_s, 3), ok, pred.emotion if pred else None,
                        pred.confidence if pred else np.nan, *(q if q is not None else [np.nan] * len(self.labels))])
        columns = ["start_s", "end_s", "speech_s", "speech", "emotion", "confidence"] + [f"p_{c}" for c in self.labels]
        return pd.DataFrame(out, columns=columns)


@dataclass(frozen=True)
class Recording:
    """The answer for one recording: the prediction, how it was made (``"clip"``: one
    utterance cropped or padded as in training; ``"timeline"``: the mean over the speech
    windows), the duration, and the timeline table (None for ``"clip"``)."""

    prediction: Prediction
    basis: str
    duration_s: float
    timeline: pd.DataFrame | None


def best_bundle(*, metrics_dir: Path, models_dir: Path) -> Path:
    """The bundle ``models_dir/<name>`` with the highest test UAR in ``metrics_dir/<name>.json``."""
    scored = []
    for f in sorted(Path(metrics_dir).glob("*.json")):
        try:
            uar = float(json.loads(f.read_text())["uar"])
        except (ValueError, KeyError, TypeError):
            continue
        if (Path(models_dir) / f.stem / "bundle.json").is_file():
            scored.append((uar, f.stem))
    if not scored:
        raise FileNotFoundError(f"no trained model: no {metrics_dir}/<model>.json with a bundle in {models_dir}/<model>/; "
                                "run `dvc repro`, or pass --model DIR")
    return Path(models_dir) / max(scored)[1]
