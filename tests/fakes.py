"""Shared test fakes: demo-like speech and tiny trained bundles (CI has no trained models).

:func:`tiny_bundles` trains a tiny ``cnn`` and ``cnn_lstm`` on synthetic clips with the
project's real feature config, once per session (``conftest.py`` exposes them as the
``bundles`` fixture).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import zlib
from pathlib import Path

import numpy as np

from pipeline import bundle as B, demo, params as P
from pipeline.descriptors import describe
from pipeline.extraction import FeatureConfig, extract, prepare
from pipeline.train import fit

ROOT = Path(__file__).resolve().parents[1]
PARAMS = P.load(ROOT / "params.yaml")
SR = int(PARAMS["base"]["sample_rate"])
LABELS = list(PARAMS["split"]["classes"])
FEATURES = {**PARAMS["features"], "sequence": [n for n in PARAMS["features"]["sequence"] if n != "ge2e"]}
"""``features`` of params.yaml without the voice encoder's frames: the tiny models here read the
log-mel family, so they need no weights (the ``ge2e`` frame tests are tests/test_voice.py's)."""
GE2E_MISSING = ("the GE2E voice encoder's weights (the Resemblyzer wheel) are not installed: "
                "pip install --no-deps --require-hashes -r requirements-weights.txt")
TINY = {
    "cnn": {"input": "sequence", "pooling": "mean", "filters": [4], "kernel_size": 3, "pool_size": 2, "dropout": 0.0, "dense": [4], "mask_padding": False, "conv": "1d", "stride": 1, "specaugment": None},
    "cnn_lstm": {"filters": [4], "kernel_size": 3, "pool_size": 4, "conv_dropout": 0.0, "lstm_units": 4,
                 "lstm_layers": 1, "bidirectional": True, "pooling": "attention", "dense": [4], "dropout": 0.0, "mask_padding": False, "specaugment": None,
                 "recurrent_dropout": 0.1, "l2": 0.001},   # regularised: exported and served as trained
    "svm": {"input": "functionals", "C": 1.0, "gamma": "scale", "gram": False, "train_on_val": False},
    "svm_compare": {"input": "compare", "C": 1.0, "gamma": "scale", "gram": True, "train_on_val": False},
    "svm_ge2e": {"input": "ge2e", "C": 1.0, "gamma": "scale", "gram": False, "train_on_val": False},
}

# A small cnn and the training params of the tests that fit one directly (pipeline.train.fit).
FIT_CNN = {"input": "sequence", "pooling": "mean", "filters": [8], "kernel_size": 3, "pool_size": 2, "dropout": 0.0,
           "dense": [8], "mask_padding": False, "conv": "1d", "stride": 1, "specaugment": None}
FIT_CFG = {**PARAMS["train"], "epochs": 40, "batch_size": 16, "learning_rate": 0.01, "class_weight": "balanced",
           "threads": 2, "early_stopping_patience": 40, "reduce_lr_patience": 40, "reduce_lr_factor": 0.5,
           "mixup_alpha": 0.0, "label_smoothing": 0.0, "lr_schedule": "plateau"}


def speech(duration_s: float, *, emotion: str = "angry", seed: int = 0, sr: int = SR) -> np.ndarray:
    """A demo-corpus utterance (pipeline.demo's voice model), float32 (n,)."""
    rng = np.random.default_rng([seed, zlib.crc32(emotion.encode())])
    f0_hz, formant_scale, offsets = demo.speaker_voice(sex=("male", "female")[seed % 2], rng=rng)
    style = demo.clip_style(emotion=emotion, strength=1.0, f0_hz=f0_hz, formant_scale=formant_scale,
                            offsets=offsets, rng=rng)
    return demo.synthesize(style=style, duration_s=duration_s, sr=sr, rng=rng).astype(np.float32)


@functools.lru_cache(maxsize=1)
def tiny_bundles(base: Path) -> dict[str, Path]:
    """``{"cnn": folder, "cnn_lstm": folder, "svm": folder, "svm_compare": folder, "svm_ge2e": folder, "fusion": folder}``:
    bundles trained on 14 clips (the Keras ones for two epochs; the SVMs on the clips' eGeMAPS and
    ComParE functionals and GE2E features; the fusion of cnn and svm with weights 2 and 1)."""
    config = FeatureConfig.from_params(FEATURES, sr=SR)
    clips = [prepare(speech(1.2 + 0.1 * i, emotion=LABELS[i % len(LABELS)], seed=i), config=config)
             for i in range(2 * len(LABELS))]
    feats = extract(np.stack([c[0] for c in clips]), np.array([c[1] for c in clips]), config=config)
    x = feats["sequence"].astype(np.float16).astype(np.float32)
    mean, std = B.fit_stats(x, feats["n_frames"])
    z = B.standardise(x, feats["n_frames"], mean=mean, std=std)
    y = np.arange(len(x)) % len(LABELS)
    train = {**PARAMS["train"], "epochs": 2, "batch_size": 8, "learning_rate": 0.01, "class_weight": "none", "threads": 2}
    out = {}
    for name, tiny in TINY.items():
        if name.startswith("svm"):
            continue
        model, _ = fit(model_name=name, model_params=tiny, train_cfg=train, seed=0, x_train=z, y_train=y,
                       x_val=None, y_val=None, labels=LABELS)
        out[name] = Path(base) / "bundles" / name
        B.save(out[name], model=model, labels=LABELS, input_kind="sequence", feature_config=config.to_dict(),
               speaker_norm=False, mean=mean, std=std,
               info={"model": name, "train_speakers": ["synthetic:1"], "feature_dtype": "float16"})
    for name in ("svm", "svm_compare", "svm_ge2e"):
        if name == "svm_ge2e" and importlib.util.find_spec("resemblyzer") is None:
            continue     # the tests that need it skip, naming GE2E_MISSING
        kind = TINY[name]["input"]
        f = describe(np.stack([c[0] for c in clips]), np.array([c[1] for c in clips]), sr=SR, kind=kind)
        mean, std = B.fit_stats(f, np.zeros(len(f), np.int32))
        model, _ = fit(model_name=name, model_params=TINY[name], train_cfg=train, seed=0, labels=LABELS, x_val=None,
                       y_val=None, x_train=B.standardise(f, np.zeros(len(f)), mean=mean, std=std), y_train=y)
        out[name] = Path(base) / "bundles" / name
        B.save(out[name], model=model, labels=LABELS, input_kind=kind, feature_config=config.to_dict(),
               speaker_norm=False, mean=mean, std=std,
               info={"model": name, "train_speakers": ["synthetic:1"], "feature_dtype": "float32"})
    out["fusion"] = Path(base) / "bundles" / "fusion"
    B.save_fusion(out["fusion"], members={"cnn": out["cnn"], "svm": out["svm"]}, weights=[2.0, 1.0])
    return out


@contextlib.contextmanager
def without_weights():
    """The GE2E voice encoder's weights as if not installed: ``voice.weights_path`` raises the
    error a missing wheel gives, with the loaded weights forgotten before and after."""
    import pytest
    from pipeline import voice

    def missing():
        raise voice.VoiceError(f"the GE2E voice encoder's weights are not installed: {voice.INSTALL}")

    voice.weights.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(voice, "weights_path", missing)
            yield
    finally:
        voice.weights.cache_clear()
