"""Stored features and the SVM bundle are the same bytes whatever CPU kernels OpenBLAS and
NumPy pick.

Each run is a fresh subprocess (the kernel choice is made at import), writing feature files
with the ``features`` stage's own writer (:func:`pipeline.features.run`, float32 storage, the
stricter of the two dtypes), the params' sequence features plus ``pitch`` and (weights installed) ``ge2e``. Other CPUs are simulated here: ``OPENBLAS_CORETYPE`` forces
OpenBLAS's kernels for another CPU family, ``NPY_DISABLE_CPU_FEATURES`` turns off NumPy's
run-time SIMD paths (AVX-512, AVX2). Both tests fail on the code before float64 products,
pocketfft's DCT and the rounded Platt parameters.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.fakes import speech

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np, pandas as pd
from pipeline import params as P
from pipeline.features import run
from pipeline.extraction import FeatureConfig

files, out = json.loads(sys.argv[1]), Path(sys.argv[2])
params = P.load(sys.argv[3])
import importlib.util
extra = ["pitch"] + (["ge2e"] if importlib.util.find_spec("resemblyzer") else [])   # the voice encoder's frames too
features = {**params["features"], "sequence": list(dict.fromkeys([*params["features"]["sequence"], *extra]))}
config = FeatureConfig.from_params(features, sr=params["base"]["sample_rate"])
table = pd.DataFrame({"clip_id": [f"c{i}" for i in range(len(files))], "path": files, "duration_s": 1.0})
run(table, out, config=config, dtype="float32", chunk_size=16, workers=1, desc="portable")
from pipeline.extraction.frames import _pitch_setup   # pitch's float64 constants, before any rounding
(out / "pitch_setup.bin").write_bytes(b"".join(np.ascontiguousarray(a).tobytes() for a in _pitch_setup(44100)[4:]))
"""


def _dispatched_numpy_features() -> str:
    """NumPy's run-time SIMD targets on this machine above its baseline (names vary by version)."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as umath

    found = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    return " ".join(found)


SETTINGS = {
    "default": {},
    "openblas-haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "openblas-sandybridge": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "openblas-prescott+numpy-baseline": {"OPENBLAS_CORETYPE": "Prescott", "NPY_DISABLE_CPU_FEATURES": None},
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    """Synthetic voices at three rates, with silence and padding (flat spectra: cancellation
    in the DCT), and real recordings when the corpus sample is present."""
    folder = tmp_path_factory.mktemp("portable_audio")
    paths = []
    for i, (emotion, sr, seconds) in enumerate([("angry", 16000, 2.0), ("sad", 44100, 1.2), ("happy", 48000, 3.6),
                                                 ("neutral", 22050, 0.8)]):
        y = np.concatenate([np.zeros(sr // 4), speech(seconds, emotion=emotion, seed=i, sr=sr), np.zeros(sr // 3)])
        sf.write(folder / f"{emotion}.wav", y.astype(np.float32), sr, subtype="FLOAT")
        paths.append(str(folder / f"{emotion}.wav"))
    sample = Path(os.environ.get("SER_SAMPLE_DIR", ROOT.parent / "shared" / "corpora-sample"))
    if sample.is_dir():
        real = sorted(p for p in sample.rglob("*") if p.suffix.lower() in {".wav", ".flac"})
        paths += [str(p) for p in real[:: max(1, len(real) // 24)][:24]]
    return paths


def _env(setting: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")}
    for key, value in SETTINGS[setting].items():
        env[key] = value if value is not None else _dispatched_numpy_features()
    if not env.get("NPY_DISABLE_CPU_FEATURES", "x"):
        env.pop("NPY_DISABLE_CPU_FEATURES")               # a CPU without dispatched SIMD: nothing to turn off
    env["PYTHONPATH"] = str(ROOT)
    return env


def _extract(setting: str, files: list[str], out: Path) -> dict[str, str]:
    subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(files), str(out), str(ROOT / "params.yaml")],
                   env=_env(setting), check=True, cwd=ROOT, capture_output=True)
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("sequence.npy", "utterance.npy", "n_frames.npy", "pitch_setup.bin")}


def test_feature_files_identical_across_cpu_kernels(clips, tmp_path):
    reference = _extract("default", clips, tmp_path / "default")
    assert len(np.load(tmp_path / "default" / "sequence.npy")) == len(clips)
    for setting in list(SETTINGS)[1:]:
        other = _extract(setting, clips, tmp_path / setting)
        for name, data in reference.items():
            assert other[name] == data, f"{name} differs between the default kernels and {setting}"


SVM_SCRIPT = r"""
import hashlib, pickle
import numpy as np
from pipeline.models.svm import SVMClassifier
rng = np.random.default_rng(0)
x = rng.standard_normal((600, 88)); y = rng.integers(0, 7, 600); x[np.arange(600), y] += 2.0
model = SVMClassifier(num_classes=7, C=1.0, gamma="scale").fit(x, y, class_weight=None, seed=42)
print(hashlib.sha256(pickle.dumps(model, protocol=4)).hexdigest())
"""


def test_svm_bundle_identical_across_cpu_kernels():
    """Platt scaling's L-BFGS fit follows NumPy's log/exp kernels in its last bits; the saved
    parameters are rounded so that the pickled model does not."""
    digests = {setting: subprocess.run([sys.executable, "-c", SVM_SCRIPT], env=_env(setting), check=True, cwd=ROOT,
                                       capture_output=True, text=True).stdout.strip().splitlines()[-1]
               for setting in ("default", "openblas-prescott+numpy-baseline")}
    assert len(set(digests.values())) == 1, digests
