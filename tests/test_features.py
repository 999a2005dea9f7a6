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
