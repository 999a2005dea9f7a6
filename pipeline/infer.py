"""Inference from a model bundle alone: the exact preprocessing the model was trained with.

:class:`Predictor` rebuilds the feature config saved in the bundle and runs the same path as
the pipeline (decode → mono → resample → loudness → crop/pad → one-STFT features → storage
dtype → the bundle's scaler → model), so a clip gets the probabilities the evaluate stage
computed for it. :meth:`Predictor.timeline` slides a window over a long recording, skips
silent windows and predicts every other window in one batch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import audio, bundle as B
from pipeline.egemaps import egemaps
from pipeline.featurize import FeatureConfig, extract, prepare


SPEAKER_NORM_HINT = ("this model normalises features per speaker (train.speaker_norm: true): give several clips "
                     "of one speaker together (`ser predict --one-speaker`), or use a model trained without it")


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
    (None: no bound), so that a small compressed file cannot claim hours of memory.
    """

    def __init__(self, folder: str | Path, *, min_duration_s: float = 0.25, silence_dbfs: float = -60.0,
                 max_duration_s: float | None = None):
        self.folder = Path(folder)
        self.bundle = self._load_bundle(self.folder)
        self.speaker_norm = bool(self.bundle.speaker_norm)
        self.config = FeatureConfig.from_dict(self.bundle.feature_config)
        self.dtypes = self.bundle.feature_dtypes
        self.labels = list(self.bundle.labels)
        self.min_duration_s, self.silence_dbfs, self.max_duration_s = min_duration_s, silence_dbfs, max_duration_s

    def _load_bundle(self, folder: Path) -> B.Bundle:
        """The bundle, its model called through :class:`GraphCall` (a subclass may run
        another runtime; ``pipeline.export.TFLitePredictor`` runs TensorFlow Lite)."""
        from pipeline.models import is_keras

        bundle = B.load(folder)
        for member in bundle.members.values() if isinstance(bundle, B.FusionBundle) else [bundle]:
            if is_keras(member.model):
                member.model = GraphCall(member.model)
        return bundle

    def _check(self, y: np.ndarray, name: str) -> None:
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

    def probabilities(self, clips: list[np.ndarray], *, one_speaker: bool = False) -> np.ndarray:
        """(n, n_classes) probabilities for mono clips at ``config.sr``, each handled as one
        utterance exactly as in training.

        A bundle trained with ``train.speaker_norm: true`` normalises each speaker's features
        with that speaker's own statistics: pass several clips of one speaker together with
        ``one_speaker=True`` (their statistics stand in for the speaker's); otherwise it is
        refused. ``one_speaker`` does nothing for other bundles."""
        if self.speaker_norm and not one_speaker:
            raise InferenceError(SPEAKER_NORM_HINT)
        fixed = [prepare(y, config=self.config) for y in clips]
        Y, n_valid = np.stack([f[0] for f in fixed]), np.array([f[1] for f in fixed])
        kinds, inputs = self.bundle.input_kinds, {}
        if {"sequence", "utterance"} & set(kinds):
            feats = extract(Y, n_valid, config=self.config)
            inputs.update({k: (feats[k], feats["n_frames"]) for k in kinds if k in feats})
        if "functionals" in kinds:
            inputs["functionals"] = (egemaps(Y, n_valid, sr=self.config.sr), np.zeros(len(Y), np.int32))
        # rounded to the storage dtype, as the features and functionals stages stored them
        inputs = {k: (x.astype(self.dtypes[k]).astype(np.float32), n) for k, (x, n) in inputs.items()}
        speakers = ["speaker"] * len(clips) if self.speaker_norm else None
        return self.bundle.predict_inputs(inputs, speakers=speakers)

    def _prediction(self, p: np.ndarray) -> Prediction:
        i = int(np.argmax(p))
        return Prediction(self.labels[i], float(p[i]), {c: float(v) for c, v in zip(self.labels, p)})

    def predict_waveform(self, y: np.ndarray, *, sr: int, name: str = "<audio>") -> Prediction:
        y = audio.resample(audio.to_mono(y) if y.ndim > 1 else y, orig_sr=sr, target_sr=self.config.sr)
        self._check(y, name)
        return self._prediction(self.probabilities([y])[0])

    def load(self, path: str | Path) -> np.ndarray:
        """Decode ``path`` to mono at ``config.sr`` and check it: shape (n,), float32.

        Raises :class:`InferenceError` naming the file: not decodable audio, empty, silent,
        NaN, infinite or constant samples, shorter than ``min_duration_s``, or longer than
        ``max_duration_s`` (:class:`AudioTooLong`, a subclass).
        """
        try:
            y = audio.load(path, sr=self.config.sr, max_duration_s=self.max_duration_s)
        except audio.AudioTooLong as err:
            raise AudioTooLong(str(err)) from None
        except audio.AudioError as err:
            raise InferenceError(str(err)) from None
        self._check(y, str(path))
        return y

    def predict_clips(self, clips: list[np.ndarray], *, one_speaker: bool = False) -> list[Prediction]:
        """One :class:`Prediction` per mono clip at ``config.sr`` (see :meth:`probabilities`)."""
        return [self._prediction(p) for p in self.probabilities(clips, one_speaker=one_speaker)] if clips else []

    def predict_file(self, path: str | Path) -> Prediction:
        return self._prediction(self.probabilities([self.load(path)])[0])

    def timeline(self, y: np.ndarray, *, window_s: float, hop_s: float, silence_dbfs: float) -> pd.DataFrame:
        """Emotion over time for a long mono recording at ``config.sr``.

        Returns one row per non-silent window: ``start_s, end_s, emotion, confidence`` and a
        ``p_<label>`` column per class. Windows whose RMS is below ``silence_dbfs`` are skipped.
        A speaker-normalised bundle takes the recording as one speaker (all its voiced windows).
        """
        if window_s <= 0 or hop_s <= 0:
            raise InferenceError(f"window ({window_s} s) and hop ({hop_s} s) must be > 0")
        sr = self.config.sr
        win, hop = int(round(window_s * sr)), int(round(hop_s * sr))
        starts = list(range(0, max(len(y) - win, 0) + 1, hop)) if len(y) >= win else [0]
        segments = [(s, y[s:s + win]) for s in starts]
        voiced = [(s, seg) for s, seg in segments if len(seg) and audio.rms_dbfs(seg) >= silence_dbfs]
        columns = ["start_s", "end_s", "emotion", "confidence"] + [f"p_{c}" for c in self.labels]
        if not voiced:
            return pd.DataFrame(columns=columns)
        if self.speaker_norm:  # the recording is one speaker: every voiced window gives the statistics
            proba = self.probabilities([seg for _, seg in voiced], one_speaker=True)
        else:
            proba = np.concatenate([self.probabilities([seg for _, seg in voiced[i:i + 64]])
                                    for i in range(0, len(voiced), 64)])
        rows = []
        for (s, seg), p in zip(voiced, proba):
            pred = self._prediction(p)
            rows.append([s / sr, (s + len(seg)) / sr, pred.emotion, pred.confidence, *p])
        return pd.DataFrame(rows, columns=columns)


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
