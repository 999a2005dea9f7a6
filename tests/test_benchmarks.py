"""The benchmark scripts run against the current code (benchmarks/latency.py broke once, unnoticed,
when ``Predictor.dtype`` became ``dtypes``): each on the tiny bundles, a few runs, its figures
only checked for shape and sign, never for speed (speed is the scripts' own job)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import soundfile as sf

from fakes import PARAMS, ROOT, SR, speech


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_latency_benchmark_times_a_keras_model_an_svm_and_a_fusion(bundles, tmp_path):
    latency = _script("latency")
    clip = tmp_path / "clip.wav"
    sf.write(clip, speech(3.0, emotion="angry", seed=0), SR, subtype="PCM_16")
    long = latency.recording(8.0, sr=SR, seed=1)
    for name in ("cnn", "svm", "fusion"):
        out = latency.bench(Path(bundles[name]), clip=clip, long=long, infer=PARAMS["infer"], runs=2, warmup=1,
                            tflite=name == "cnn")
        parts = ["predict_file_ms"] + ([] if name == "fusion" else ["features_ms", "model_ms"]) \
            + (["tflite_model_ms"] if name == "cnn" else [])
        assert all(0 < out[k]["median"] <= out[k]["p90"] for k in parts), (name, out)
        assert out["timeline"]["windows"] > 0 and out["timeline"]["audio_s_per_wall_s"] > 0, (name, out)
        assert ("members" in out) == (name == "fusion") and ("tflite_model_ms" in out) == (name == "cnn"), (name, out)
