"""The features stage's I/O: aligned outputs, failed clips reported and dropped, empty input."""
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipeline.extraction import FeatureConfig
from pipeline.features import run

FEATURES = {"seconds": 1.0, "crop": "centre", "loudness": "rms", "target_dbfs": -23.0, "n_fft": 512,
            "win_length": 400, "hop_length": 160, "sequence": ["logmel", "mfcc", "zcr", "rms"], "n_mels": 32,
            "n_mfcc": 13, "mfcc_deltas": False, "utterance": {"n_mfcc": 40, "n_chroma": 12, "n_mels": 128, "std": True}}


@pytest.fixture
def config():
    return FeatureConfig.from_params(FEATURES, sr=16000)


def table_of(tmp_path, n, bad=()):
    rows = []
    for i in range(n):
        path = tmp_path / f"c{i}.wav"
        if i in bad:
            path.write_text("not audio")
        else:
            t = np.arange(int(16000 * (0.5 + 0.1 * i))) / 16000
            sf.write(path, (0.2 * np.sin(2 * np.pi * (120 + 10 * i) * t)).astype(np.float32), 16000)
        rows.append({"clip_id": f"x:{i}", "path": str(path), "duration_s": 0.5 + 0.1 * i})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_outputs_are_aligned_and_failed_clips_reported(tmp_path, config, dtype):
    table = table_of(tmp_path, 7, bad={2, 5})
    summary = run(table, tmp_path / "out", config=config, dtype=dtype, chunk_size=3, workers=2, desc="t")
    assert summary["clips"] == 5 and summary["failed"] == 2
    seq = np.load(tmp_path / "out" / "sequence.npy")
    utt = np.load(tmp_path / "out" / "utterance.npy")
    n_frames = np.load(tmp_path / "out" / "n_frames.npy")
    index = pd.read_csv(tmp_path / "out" / "index.csv")
    assert index.clip_id.tolist() == ["x:0", "x:1", "x:3", "x:4", "x:6"]
    assert seq.shape == (5, config.n_frames, len(config.sequence_names())) and seq.dtype == dtype
    assert utt.shape == (5, len(config.utterance_names())) and np.isfinite(utt).all()
    assert (np.diff(n_frames) > 0).all()  # clips get longer with i, so do their real frames
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert len(meta["failed"]) == 2 and "c2.wav" in meta["failed"][0]
    # a single-process, one-chunk run gives the same arrays: chunking and workers change nothing
    run(table, tmp_path / "one", config=config, dtype=dtype, chunk_size=100, workers=1, desc="t")
    np.testing.assert_allclose(np.load(tmp_path / "one" / "sequence.npy"), seq, atol=1e-3)


def test_empty_input_writes_empty_arrays_of_the_right_shape(tmp_path, config):
    run(pd.DataFrame(columns=["clip_id", "path", "duration_s"]), tmp_path / "out", config=config, dtype="float16",
        chunk_size=4, workers=1, desc="t")
    assert np.load(tmp_path / "out" / "sequence.npy").shape == (0, config.n_frames, len(config.sequence_names()))
    assert pd.read_csv(tmp_path / "out" / "index.csv").empty


def test_the_stage_with_ge2e_frames_and_no_weights_stops_with_one_line_naming_the_install(tmp_path):
    """``features.sequence`` listing ``ge2e`` with a Resemblyzer package that lacks its weights file
    (first on the path): the stage stops before any clip, in one line."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "fake" / "resemblyzer").mkdir(parents=True)
    (tmp_path / "fake" / "resemblyzer" / "__init__.py").write_text("raise ImportError('never imported')\n")
    work = tmp_path / "work"
    (work / "data" / "interim" / "manifests").mkdir(parents=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["features"]["sequence"] = ["logmel", "ge2e"]
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    pd.DataFrame({"clip_id": ["ravdess:x"], "path": ["x.wav"], "duration_s": [1.0]}).to_csv(
        work / "data" / "interim" / "manifests" / "ravdess.csv", index=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(root)])}
    done = subprocess.run([sys.executable, "-m", "pipeline.features", "--corpus", "ravdess", "--source", "original"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("features: ") and "pretrained.pt: missing from the Resemblyzer package" in last, done.stderr
    assert "pip install --no-deps --require-hashes -r requirements-weights.txt" in last
    assert "Traceback" not in done.stderr and not (work / "data" / "features").exists()
