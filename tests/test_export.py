"""TensorFlow Lite export: the exported cnn and cnn_lstm (with AttentionPooling) predict what
Keras predicts, and the .tflite file with bundle.json and scaler.npz is enough to run.

Uses the tiny bundles of the ``bundles`` fixture (``conftest.py``; CI has no trained models).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.cli import main
from pipeline.export import TFLiteModel, TFLitePredictor, export_bundle, to_tflite
from pipeline.infer import InferenceError, Predictor
from fakes import LABELS, SR, speech

TOLERANCE = 1e-4  # largest probability difference allowed between Keras and TensorFlow Lite


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Demo-like clips of every class, 0.8-4.5 s (cropped and zero-padded inputs both)."""
    folder = tmp_path_factory.mktemp("export_clips")
    paths = []
    for i, emotion in enumerate(LABELS):
        paths.append(folder / f"{i}_{emotion}.wav")
        sf.write(paths[-1], speech(0.8 + 0.6 * i, emotion=emotion, seed=10 + i), SR, subtype="PCM_16")
    return paths


@pytest.fixture(scope="module")
def exported(bundles, tmp_path_factory) -> dict[str, Path]:
    """Each bundle's export in a folder of its own, next to copies of bundle.json and
    scaler.npz only (no model.keras)."""
    out = {}
    for name, folder in bundles.items():
        if name in ("svm", "svm_compare", "svm_ge2e", "fusion"):  # no TensorFlow Lite form (test_an_svm_bundle_is_refused...)
            continue
        lite = tmp_path_factory.mktemp(f"lite_{name}")
        for f in ("bundle.json", "scaler.npz"):
            shutil.copy(folder / f, lite / f)
        export_bundle(folder, out=lite / "model.tflite")
        out[name] = lite
    return out


@pytest.mark.parametrize("name", ["cnn", "cnn_lstm"])
def test_the_tflite_model_gives_the_keras_probabilities(bundles, name):
    keras_model = Predictor(bundles[name]).bundle.model
    shape = tuple(keras_model.input_shape[1:])
    lite = TFLiteModel(to_tflite(keras_model.model))
    x = np.random.default_rng(0).standard_normal((5, *shape)).astype(np.float32)
    x[2, shape[0] // 2:] = 0.0                                                   # a zero-padded clip
    expected, got = np.asarray(keras_model(x)), lite(x)
    assert got.shape == expected.shape == (5, len(LABELS))
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


@pytest.mark.parametrize("name", ["cnn", "cnn_lstm"])
def test_the_exported_predictor_matches_keras_on_audio_without_model_keras(bundles, exported, clips, name):
    assert not (exported[name] / "model.keras").exists()
    kwargs = {"window_s": 3.0, "hop_s": 1.5}
    keras_predictor, lite = Predictor(bundles[name], **kwargs), TFLitePredictor(exported[name], **kwargs)
    for path in clips:
        a, b = keras_predictor.predict_file(path), lite.predict_file(path)
        assert a.emotion == b.emotion
        np.testing.assert_allclose(list(b.probabilities.values()), list(a.probabilities.values()), atol=TOLERANCE)
    y = np.concatenate([sf.read(p, dtype="float32")[0] for p in clips])
    t_keras, t_lite = keras_predictor.timeline(y), lite.timeline(y)
    assert list(t_lite.emotion) == list(t_keras.emotion) and t_lite.speech.sum() > 5
    np.testing.assert_allclose(t_lite.filter(like="p_"), t_keras.filter(like="p_"), atol=TOLERANCE)


def test_export_json_describes_the_input_and_the_labels(exported):
    meta = json.loads((exported["cnn_lstm"] / "export.json").read_text())
    assert meta["tflite"] == "model.tflite" and meta["labels"] == LABELS
    assert meta["input_kind"] == "sequence" and meta["input_shape"] == [1, 301, 106]


def test_the_exported_predictor_refuses_bad_input_and_missing_files(exported, tmp_path):
    lite = TFLitePredictor(exported["cnn"])
    with pytest.raises(InferenceError, match="zero-length file"):
        lite.predict_file(_touch(tmp_path / "empty.wav"))
    sf.write(tmp_path / "nan.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    with pytest.raises(InferenceError, match=r"nan\.wav: NaN samples"):
        lite.predict_file(tmp_path / "nan.wav")
    sf.write(tmp_path / "noise.wav", 0.1 * np.random.default_rng(0).standard_normal(3 * SR), SR)
    with pytest.raises(InferenceError, match=r"noise\.wav: no speech detected"):
        lite.predict_file(tmp_path / "noise.wav")
    with pytest.raises(FileNotFoundError, match=r"no exported model; run `ser export"):
        TFLitePredictor(exported["cnn"], tflite=tmp_path / "none.tflite")
    with pytest.raises(ValueError, match=r"expected input of shape \(n, 301, 106\)"):
        lite.bundle.model(np.zeros((1, 300, 106), dtype=np.float32))


def test_ser_export_writes_next_to_the_bundle_and_checks_parity(capsys, bundles, clips, tmp_path):
    folder = tmp_path / "cnn"
    shutil.copytree(bundles["cnn"], folder)
    code = main(["export", "--model", str(folder), "--check", *map(str, clips[:2])])
    out = capsys.readouterr().out
    assert code == 0 and (folder / "model.tflite").is_file() and (folder / "export.json").is_file()
    assert out.count("ok ") == 2 and "DIFF" not in out
    code = main(["export", "--model", str(folder), "--out", str(tmp_path / "x.tflite"), "--check",
                 str(_touch(tmp_path / "empty.wav"))])
    assert code == 1 and "zero-length" in capsys.readouterr().err
    assert main(["export", "--model", str(folder), "--out", str(tmp_path / "x.onnx")]) == 2


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def test_an_svm_bundle_is_refused_with_the_reason_and_exit_2(capsys, bundles, tmp_path):
    folder = tmp_path / "svm"
    shutil.copytree(bundles["svm"], folder)
    assert main(["export", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "scikit-learn SVM bundle has no TensorFlow Lite form" in err and str(folder) in err
    assert not (folder / "model.tflite").exists()


def test_a_fusion_bundle_is_refused_with_the_reason(capsys, bundles):
    assert main(["export", "--model", str(bundles["fusion"])]) == 2
    assert "a fusion bundle has no single TensorFlow Lite form" in capsys.readouterr().err


def test_a_bundle_reading_some_frame_features_exports_those_columns(tmp_path, clips):
    """A ``cnn`` trained on ``models.cnn.sequence: [zcr, rms]``: the TensorFlow Lite model takes
    those 2 columns, ``export.json`` lists their positions, and it predicts as the Keras bundle."""
    from fakes import FEATURES, PARAMS, TINY
    from pipeline import bundle as B
    from pipeline.extraction import FeatureConfig, extract, prepare
    from pipeline.train import fit

    config = FeatureConfig.from_params(FEATURES, sr=SR)
    cols = config.columns(["zcr", "rms"])
    fixed = [prepare(speech(1.0 + 0.2 * i, emotion=LABELS[i % len(LABELS)], seed=i), config=config) for i in range(14)]
    feats = extract(np.stack([f[0] for f in fixed]), np.array([f[1] for f in fixed]), config=config)
    x = feats["sequence"].astype(np.float16).astype(np.float32)[..., cols]
    mean, std = B.fit_stats(x, feats["n_frames"])
    train = {**PARAMS["train"], "epochs": 1, "batch_size": 8, "learning_rate": 0.01, "class_weight": "none", "threads": 1}
    model, _ = fit(model_name="cnn", model_params=TINY["cnn"], train_cfg=train, seed=0, labels=LABELS, x_val=None,
                   y_val=None, x_train=B.standardise(x, feats["n_frames"], mean=mean, std=std), y_train=np.arange(14) % len(LABELS))
    B.save(tmp_path / "b", model=model, labels=LABELS, input_kind="sequence", feature_config=config.to_dict(),
           speaker_norm=False, mean=mean, std=std,
           info={"model": "cnn", "model_params": TINY["cnn"], "feature_dtype": "float16", "sequence_features": ["zcr", "rms"]})
    export_bundle(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "export.json").read_text())
    assert meta["input_shape"] == [1, 301, 2] and meta["columns"] == cols.tolist() == [104, 105]
    assert "only the frame-feature columns listed in 'columns'" in meta["preprocessing"]
    a, b = Predictor(tmp_path / "b").predict_file(clips[2]), TFLitePredictor(tmp_path / "b").predict_file(clips[2])
    np.testing.assert_allclose(list(b.probabilities.values()), list(a.probabilities.values()), atol=TOLERANCE)
