#!/usr/bin/env python3
"""Inference latency of trained bundles on the CPU: one clip, and a long recording's timeline.

For each bundle, with the model loaded and warmed up:

- ``predict_file_ms``: :meth:`Predictor.predict_file` on a ``--clip-s`` (3 s) WAV clip, the
  whole path (decode, resample, loudness, features, scaler, model), median and p90 over
  ``--runs`` runs;
- ``features_ms`` and ``model_ms``: its two main parts, features of the decoded clip
  (``extraction.prepare`` + ``extract``, or the SVM's ``describe``) and the model's forward pass
  on the standardised features (what ``Predictor`` calls);
- ``tflite_model_ms`` (with ``--tflite``): the same forward pass in TensorFlow Lite;
- ``timeline``: :meth:`Predictor.timeline` on a ``--recording-s`` (60 s) recording with the
  ``infer`` window, hop and speech threshold of params.yaml (the voice-activity detector
  included): audio seconds per wall second.

The audio is synthesised with the demo corpus's voice model (:mod:`pipeline.demo`), so the
benchmark needs no data. Prints one JSON object. Run from the project root:

    python benchmarks/latency.py [--model models/cnn --model models/cnn_lstm] [--runs 50] [--tflite]

Without ``--model``: every bundle ``<train.out>/<model>`` that has ``metrics/<model>.json``. A
fusion bundle gets ``predict_file_ms`` and ``timeline`` only (its members' parts: time the members).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import zlib
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `pipeline` importable from the project root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from pipeline import bundle as B, demo, params as P  # noqa: E402
from pipeline.dataset import FUNCTIONAL_KINDS  # noqa: E402
from pipeline.descriptors import describe  # noqa: E402
from pipeline.extraction import extract, prepare  # noqa: E402
from pipeline.infer import InferSettings, Predictor  # noqa: E402
from pipeline.models import is_keras  # noqa: E402


def speech(duration_s: float, *, emotion: str, sr: int, seed: int) -> np.ndarray:
    """One synthetic utterance of ``duration_s`` (the demo corpus's voice model), float32 (n,)."""
    rng = np.random.default_rng([seed, zlib.crc32(emotion.encode())])
    f0_hz, formant_scale, offsets = demo.speaker_voice(sex=("male", "female")[seed % 2], rng=rng)
    style = demo.clip_style(emotion=emotion, strength=1.0, f0_hz=f0_hz, formant_scale=formant_scale,
                            offsets=offsets, rng=rng)
    return demo.synthesize(style=style, duration_s=duration_s, sr=sr, rng=rng).astype(np.float32)


def recording(duration_s: float, *, sr: int, seed: int) -> np.ndarray:
    """Utterances of 1.5-3.5 s in turn through the demo emotions, 0.3-1.5 s pauses between."""
    rng, parts, n = np.random.default_rng(seed), [], 0
    while n < duration_s * sr:
        emotion = demo.EMOTIONS[len(parts) % len(demo.EMOTIONS)]
        parts += [speech(rng.uniform(1.5, 3.5), emotion=emotion, sr=sr, seed=seed + len(parts)),
                  np.zeros(int(rng.uniform(0.3, 1.5) * sr), dtype=np.float32)]
        n += len(parts[-2]) + len(parts[-1])
    return np.concatenate(parts)[:int(duration_s * sr)]


def timed_ms(fn, *, runs: int, warmup: int) -> dict[str, float]:
    """Median and 90th percentile wall time of ``fn()`` in ms, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {"median": round(float(np.median(times)), 2), "p90": round(float(np.percentile(times, 90)), 2)}


def bench(folder: Path, *, clip: Path, long: np.ndarray, infer: dict, runs: int, warmup: int,
          tflite: bool) -> dict:
    t0 = time.perf_counter()
    predictor = Predictor(folder, **InferSettings.from_params(infer).predictor_kwargs())
    out = {"load_s": round(time.perf_counter() - t0, 2)}
    out["predict_file_ms"] = timed_ms(lambda: predictor.predict_file(clip), runs=runs, warmup=warmup)
    y = predictor.load(clip)
    config, bundle = predictor.config, predictor.bundle
    if isinstance(bundle, B.FusionBundle):   # its members' features and models: time the members alone
        return {**out, "members": list(bundle.members), **timeline(predictor, long)}

    def features():
        y_fixed, n_valid = prepare(y, config=config)
        if bundle.input_kind in FUNCTIONAL_KINDS:   # an SVM's openSMILE functionals or voice-encoder vector
            return {bundle.input_kind: describe(y_fixed[None], np.array([n_valid]), sr=config.sr, kind=bundle.input_kind),
                    "n_frames": np.zeros(1, np.int32)}
        return extract(y_fixed[None], np.array([n_valid]), config=config)

    out["features_ms"] = timed_ms(features, runs=runs, warmup=warmup)
    feats = features()
    x = feats[bundle.input_kind].astype(predictor.dtypes[bundle.input_kind]).astype(np.float32)
    if bundle.columns is not None:      # a model reading some of the frame features (models.<name>.sequence)
        x = x[..., bundle.columns]
    z = B.standardise(x, feats["n_frames"], mean=bundle.mean, std=bundle.std)
    out["model_ms"] = timed_ms(lambda: np.asarray(bundle.model(z, training=False)), runs=runs, warmup=warmup)
    if tflite and is_keras(getattr(bundle.model, "model", bundle.model)):   # the SVMs have no TensorFlow Lite form
        from pipeline.export import TFLiteModel, to_tflite

        lite = TFLiteModel(to_tflite(bundle.model.model, input_shape=z.shape[1:]))
        out["tflite_model_ms"] = timed_ms(lambda: lite(z), runs=runs, warmup=warmup)
    return {**out, **timeline(predictor, long)}


def timeline(predictor: Predictor, long: np.ndarray) -> dict:
    """``{"timeline": ...}``: :meth:`Predictor.timeline` of ``long``, audio seconds per wall second."""
    sr = predictor.config.sr
    kwargs = {"window_s": predictor.window_s, "hop_s": predictor.hop_s, "min_speech_s": predictor.min_speech_s}
    predictor.timeline(long[: 10 * sr])  # warm-up (traces the batch shapes)
    t0 = time.perf_counter()
    table = predictor.timeline(long)
    wall = time.perf_counter() - t0
    audio_s = len(long) / sr
    return {"timeline": {"audio_s": round(audio_s, 1), "windows": len(table), "wall_s": round(wall, 3),
                         "audio_s_per_wall_s": round(audio_s / wall, 1), **kwargs}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, action="append", help="bundle folder (repeat for several)")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--clip-s", type=float, default=3.0, help="length of the one-clip input, s")
    ap.add_argument("--recording-s", type=float, default=60.0, help="length of the timeline input, s")
    ap.add_argument("--tflite", action="store_true", help="also time the TensorFlow Lite forward pass")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = P.load(args.params)
    infer = P.require(params, "infer")
    sr = int(P.require(params, "base.sample_rate"))
    out_dir = Path(P.require(params, "train.out"))
    folders = args.model or [out_dir / f.stem for f in sorted(Path("metrics").glob("*.json"))
                             if (out_dir / f.stem / "bundle.json").is_file()]
    if not folders:
        sys.exit("latency: no bundle; run `dvc repro` or pass --model")
    long = recording(args.recording_s, sr=sr, seed=1)
    result = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version()},
              "clip_s": args.clip_s, "runs": args.runs, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.wav"
        sf.write(clip, speech(args.clip_s, emotion="angry", sr=sr, seed=0), sr, subtype="PCM_16")
        for folder in folders:
            result["models"][folder.name] = bench(folder, clip=clip, long=long, infer=infer, runs=args.runs,
                                                  warmup=args.warmup, tflite=args.tflite)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
