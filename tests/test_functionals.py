"""eGeMAPS functionals (pipeline.egemaps), their stage (pipeline.functionals) and the SVM model."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fakes import FEATURES, GE2E_MISSING, LABELS, SR, speech, without_weights
from pipeline import bundle as B, dataset, egemaps, functionals
from pipeline.descriptors import describe
from pipeline.extraction import FeatureConfig, prepare
from pipeline.infer import Predictor
from pipeline.models import check_params, input_kind, is_keras
from pipeline.params import ParamsError
from pipeline.train import fit

ROOT = Path(__file__).resolve().parents[1]

CONFIG = FeatureConfig.from_params(FEATURES, sr=SR)


def test_egemaps_gives_88_finite_named_values_and_ignores_the_padding():
    y = speech(1.5, emotion="angry", seed=3)
    y_fixed, n_valid = prepare(y, config=CONFIG)
    out = egemaps.egemaps(y_fixed[None], np.array([n_valid]), sr=SR)
    assert out.shape == (1, 88) and out.dtype == np.float32 and np.isfinite(out).all()
    assert len(egemaps.names()) == 88 and egemaps.names()[0].startswith("F0semitone")
    # the zero padding after n_valid is not analysed: more padding, the same vector
    padded = np.concatenate([y_fixed[:n_valid], np.zeros(SR, np.float32)])
    np.testing.assert_array_equal(egemaps.egemaps(padded[None], np.array([n_valid]), sr=SR), out)
    # loudness (functional 10 is the mean loudness) follows the signal
    louder = egemaps.egemaps(y_fixed[None] * 4, np.array([n_valid]), sr=SR)
    assert louder[0, egemaps.names().index("loudness_sma3_amean")] > out[0, egemaps.names().index("loudness_sma3_amean")]


def test_egemaps_of_silence_and_of_a_tiny_clip_is_finite():
    out = egemaps.egemaps(np.zeros((2, 800), np.float32), np.array([800, 10]), sr=SR)
    assert out.shape == (2, 88) and np.isfinite(out).all()


def test_the_stage_writes_one_row_per_clip_and_lists_a_bad_file(tmp_path):
    paths = []
    for i, emotion in enumerate(("angry", "sad", "happy")):
        paths.append(tmp_path / f"{emotion}.wav")
        sf.write(paths[-1], speech(1.0, emotion=emotion, seed=i), SR, subtype="PCM_16")
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    table = pd.DataFrame({"clip_id": ["c:a", "c:bad", "c:s", "c:h"],
                          "path": [paths[0], tmp_path / "bad.wav", paths[1], paths[2]]})
    out = functionals.folder(tmp_path / "features", "original", "c")
    summary = functionals.run(table, out, config=CONFIG, chunk_size=2, workers=1, desc="test")
    assert summary == {"clips": 3, "failed": 1, "seconds": pytest.approx(summary["seconds"])}
    meta = json.loads((out / "meta.json").read_text())
    assert len(meta["failed"]) == 1 and "bad.wav" in meta["failed"][0] and meta["names"] == egemaps.names()
    assert pd.read_csv(out / "index.csv").clip_id.tolist() == ["c:a", "c:s", "c:h"]
    # the loader finds them by clip id, in the caller's order, as for the frame features
    rows = pd.DataFrame({"clip_id": ["c:h", "c:a"], "corpus": "c"})
    f = dataset.load(rows, features_dir=tmp_path / "features", kind="functionals")
    direct = egemaps.egemaps(*map(np.array, zip(*[prepare(sf.read(paths[2], dtype="float32")[0], config=CONFIG)])),
                             sr=SR)
    np.testing.assert_array_equal(f.x[0], direct[0])
    assert f.rows.clip_id.tolist() == ["c:h", "c:a"] and f.x.shape == (2, 88)


def test_svm_params_are_checked_and_it_reads_the_functionals():
    assert input_kind("svm", {"input": "functionals", "C": 1.0, "gamma": "scale"}) == "functionals"
    assert not is_keras("svm") and is_keras("cnn")
    with pytest.raises(ParamsError, match=r"models\.svm\.C=0 must be > 0"):
        check_params("svm", {"input": "functionals", "C": 0, "gamma": "scale"})
    with pytest.raises(ParamsError, match=r"models.svm.gamma='wide' must be 'scale', 'auto' or a number > 0"):
        check_params("svm", {"input": "functionals", "C": 1, "gamma": "wide"})
    with pytest.raises(ParamsError, match=r"models.svm.input='sequence' is not valid"):
        check_params("svm", {"input": "sequence", "C": 1, "gamma": "scale"})


def _toy(n_per_class: int, *, seed: int):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    x = rng.normal(size=(len(y), 10)) + 1.5 * np.eye(3, 10)[y]
    return x.astype(np.float32), y


def test_the_svm_learns_is_deterministic_and_round_trips_through_a_bundle(tmp_path):
    x, y = _toy(40, seed=0)
    xt, yt = _toy(30, seed=1)
    params = {"input": "functionals", "C": 1.0, "gamma": "scale"}
    cfg = {"class_weight": "balanced"}
    a, hist = fit(model_name="svm", model_params=params, train_cfg=cfg, seed=5, x_train=x, y_train=y, x_val=xt,
                  y_val=yt, labels=["a", "b", "c", "d"])
    b, _ = fit(model_name="svm", model_params=params, train_cfg=cfg, seed=5, x_train=x, y_train=y, x_val=None,
               y_val=None, labels=["a", "b", "c", "d"])
    pa = a(xt)
    assert pa.shape == (90, 4) and np.all(pa[:, 3] == 0)               # a class never trained on: probability 0
    np.testing.assert_allclose(pa.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(pa, b(xt))
    assert hist["val_uar"][0] > 0.6                                     # chance is 1/3
    B.save(tmp_path / "svm", model=a, labels=["a", "b", "c", "d"], input_kind="functionals",
           feature_config=CONFIG.to_dict(), speaker_norm=False, mean=np.zeros(10), std=np.ones(10), info={})
    assert (tmp_path / "svm" / "model.pkl").is_file() and not (tmp_path / "svm" / "model.keras").exists()
    loaded = B.load(tmp_path / "svm")
    np.testing.assert_array_equal(loaded.predict_proba(xt, np.zeros(len(xt))), pa.astype(np.float64))


@pytest.mark.parametrize("gram", [False, True])
def test_the_svm_fit_does_not_depend_on_the_seed(gram):
    """What lets the protocol stage fit an SVM once per fold for every seed (pipeline.protocol)."""
    x, y = _toy(40, seed=0)
    xt, _ = _toy(30, seed=1)
    params = {"input": "functionals", "C": 1.0, "gamma": "scale", "gram": gram}
    probs = [fit(model_name="svm", model_params=params, train_cfg={"class_weight": "balanced"}, seed=seed, x_train=x,
                 y_train=y, x_val=None, y_val=None, labels=["a", "b", "c", "d"])[0](xt) for seed in (1, 2, 12345)]
    np.testing.assert_array_equal(probs[0], probs[1])
    np.testing.assert_array_equal(probs[0], probs[2])


@pytest.mark.parametrize("name, kind, width", [("svm", "functionals", 88), ("svm_compare", "compare", 6373),
                                               ("svm_ge2e", "ge2e", 256)])
def test_predicting_a_file_with_the_svm_bundle_uses_the_training_preprocessing(bundles, tmp_path, name, kind, width):
    if name not in bundles:
        pytest.skip(GE2E_MISSING)
    path = tmp_path / "clip.wav"
    y = speech(2.0, emotion="sad", seed=9)
    sf.write(path, y, SR, subtype="FLOAT")
    predictor = Predictor(bundles[name])
    got = predictor.probabilities([predictor.load(path)])
    b = B.load(bundles[name])
    assert b.input_kind == kind and len(b.mean) == width
    y_fixed, n_valid = prepare(y, config=CONFIG)
    want = b.predict_proba(describe(y_fixed[None], np.array([n_valid]), sr=SR, kind=kind), np.zeros(1))
    np.testing.assert_array_equal(got, want)
    assert list(predictor.labels) == LABELS


def test_a_fusion_with_svm_ge2e_predicts_the_mean_of_its_members_from_the_file(bundles, tmp_path):
    from pipeline.bundle import save_fusion

    if "svm_ge2e" not in bundles:
        pytest.skip(GE2E_MISSING)
    path = tmp_path / "clip.wav"
    sf.write(path, speech(2.2, emotion="fearful", seed=6), SR, subtype="PCM_16")
    save_fusion(tmp_path / "f", members={"svm_ge2e": bundles["svm_ge2e"], "cnn": bundles["cnn"]}, weights=[1.0, 1.0])
    fused = Predictor(tmp_path / "f")
    assert sorted(fused.bundle.input_kinds) == ["ge2e", "sequence"]
    y = fused.load(path)
    one = [Predictor(bundles[m]).probabilities([y]) for m in ("svm_ge2e", "cnn")]
    np.testing.assert_allclose(fused.probabilities([y]), (one[0] + one[1]) / 2, rtol=0, atol=1e-12)


def test_a_ge2e_bundle_without_the_encoders_weights_is_refused_naming_the_install(bundles):
    from pipeline.infer import InferenceError

    if "svm_ge2e" not in bundles:
        pytest.skip(GE2E_MISSING)
    Predictor(bundles["svm_ge2e"])                       # loads with the weights installed
    with without_weights():
        with pytest.raises(InferenceError, match=r"not installed: pip install --no-deps --require-hashes -r requirements-weights\.txt"):
            Predictor(bundles["svm_ge2e"])
        Predictor(bundles["svm"])                        # a bundle that does not read it is unaffected


def test_the_fusion_bundle_predicts_the_weighted_mean_of_its_members(bundles, tmp_path):
    from pipeline.bundle import FusionBundle, save_fusion

    path = tmp_path / "clip.wav"
    sf.write(path, speech(2.5, emotion="happy", seed=4), SR, subtype="PCM_16")
    fused = Predictor(bundles["fusion"])
    assert isinstance(fused.bundle, FusionBundle) and fused.bundle.input_kinds == ["functionals", "sequence"]
    y = fused.load(path)
    cnn, svm = Predictor(bundles["cnn"]).probabilities([y]), Predictor(bundles["svm"]).probabilities([y])
    np.testing.assert_allclose(fused.probabilities([y]), (2 * cnn + svm) / 3, rtol=0, atol=1e-12)
    # self-contained: the members are copied in
    assert (bundles["fusion"] / "members" / "cnn" / "model.keras").is_file()
    # members with other labels cannot be fused
    other = tmp_path / "other"
    b = B.load(bundles["svm"])
    B.save(other, model=b.model, labels=list(reversed(b.labels)), input_kind=b.input_kind,
           feature_config=b.feature_config, speaker_norm=False, mean=b.mean, std=b.std, info={"train_speakers": ["x:1"]})
    with pytest.raises(ValueError, match="train every member on the same split.classes"):
        save_fusion(tmp_path / "f", members={"cnn": bundles["cnn"], "other": other}, weights=[1, 1])
    # nor members that prepare the clips otherwise (checked from bundle.json, the models never loaded)
    B.save(other, model=b.model, labels=b.labels, input_kind=b.input_kind,
           feature_config={**b.feature_config, "seconds": b.feature_config["seconds"] + 1},
           speaker_norm=False, mean=b.mean, std=b.std, info={"train_speakers": ["x:1"]})
    with pytest.raises(ValueError, match="another feature config than 'cnn'"):
        save_fusion(tmp_path / "f", members={"cnn": bundles["cnn"], "other": other}, weights=[1, 1])
    script = ("import sys; from pipeline.bundle import save_fusion; "
              f"save_fusion({str(tmp_path / 'g')!r}, members={{'cnn': {str(bundles['cnn'])!r}, 'svm': {str(bundles['svm'])!r}}}, "
              "weights=[2.0, 1.0]); print('tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.split() == ["False"], proc.stderr[-2000:]   # the fuse stage without TensorFlow
    assert (tmp_path / "g" / "bundle.json").read_text() == (bundles["fusion"] / "bundle.json").read_text()


def test_a_class_with_a_single_training_clip_still_gives_probabilities():
    x, y = _toy(10, seed=2)
    x, y = np.concatenate([x, x[:1] + 5]), np.concatenate([y, [3]])          # class 3: one clip
    model, _ = fit(model_name="svm", model_params={"input": "functionals", "C": 1.0, "gamma": "scale"},
                   train_cfg={"class_weight": "balanced"}, seed=0, x_train=x, y_train=y, x_val=None, y_val=None,
                   labels=["a", "b", "c", "d"])
    p = model(x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert np.mean(p.argmax(axis=1) == y) > 0.6


def test_compare_gives_6373_named_values_and_its_stage_writes_its_own_folder(tmp_path):
    y_fixed, n_valid = prepare(speech(1.5, emotion="happy", seed=5), config=CONFIG)
    out = egemaps.egemaps(y_fixed[None], np.array([n_valid]), sr=SR, kind="compare")
    assert out.shape == (1, 6373) and out.dtype == np.float32 and np.isfinite(out).all()
    assert len(egemaps.names("compare")) == 6373 and "F0final_sma_amean" in egemaps.names("compare")
    with pytest.raises(ValueError, match="unknown functionals kind 'gemaps'; choose one of"):
        egemaps.names("gemaps")
    sf.write(tmp_path / "a.wav", speech(1.0, emotion="angry", seed=1), SR, subtype="PCM_16")
    table = pd.DataFrame({"clip_id": ["c:a"], "path": [tmp_path / "a.wav"]})
    folder = functionals.folder(tmp_path / "features", "original", "c", "compare")
    assert folder == tmp_path / "features" / "compare" / "original" / "c"
    functionals.run(table, folder, config=CONFIG, chunk_size=2, workers=1, desc="test", kind="compare")
    assert json.loads((folder / "meta.json").read_text())["feature_set"] == "ComParE_2016"
    f = dataset.load(table[["clip_id"]].assign(corpus="c"), features_dir=tmp_path / "features", kind="compare")
    assert f.x.shape == (1, 6373)
    assert input_kind("svm_compare", {"input": "compare", "C": 1.0, "gamma": "scale", "gram": True}) == "compare"
    assert not is_keras("svm_compare")


@pytest.mark.parametrize("gamma", ["scale", "auto", 0.05])
def test_the_precomputed_kernel_svm_is_the_libsvm_kernel_svm(tmp_path, gamma):
    x, y = _toy(40, seed=0)
    xt, _ = _toy(30, seed=1)
    cfg = {"class_weight": "balanced"}
    params = {"input": "compare", "C": 1.0, "gamma": gamma}
    plain, _ = fit(model_name="svm_compare", model_params={**params, "gram": False}, train_cfg=cfg, seed=5,
                   x_train=x, y_train=y, x_val=None, y_val=None, labels=["a", "b", "c", "d"])
    gram, _ = fit(model_name="svm_compare", model_params={**params, "gram": True}, train_cfg=cfg, seed=5,
                  x_train=x, y_train=y, x_val=None, y_val=None, labels=["a", "b", "c", "d"])
    # the same SVM up to the float32 rounding of the kernel; the test kernel uses the support vectors only
    np.testing.assert_allclose(gram(xt), plain(xt), atol=1e-4, rtol=0)
    assert 0 < len(gram.support_x_) < len(x) and gram.count_params() == plain.count_params()
    B.save(tmp_path / "g", model=gram, labels=["a", "b", "c", "d"], input_kind="compare",
           feature_config=CONFIG.to_dict(), speaker_norm=False, mean=np.zeros(10), std=np.ones(10), info={})
    np.testing.assert_array_equal(B.load(tmp_path / "g").predict_proba(xt, np.zeros(len(xt))),
                                  gram(xt).astype(np.float64))


def test_the_kernel_in_row_blocks_is_the_one_line_formula_to_the_bit():
    from pipeline.models.svm import rbf_gram
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((50, 300)).astype(np.float32), rng.standard_normal((23, 300)).astype(np.float32)

    def formula(p, q, gamma):   # three kernel-sized temporaries (rbf_gram before it worked in blocks)
        p, q = p.astype(np.float64), q.astype(np.float64)
        d = (p * p).sum(axis=1)[:, None] + (q * q).sum(axis=1)[None, :] - 2.0 * (p @ q.T)
        return np.exp(-gamma * np.maximum(d, 0.0)).astype(np.float32).astype(np.float64)

    for p, q in ((a, a), (b, a), (a, b)):
        want = formula(p, q, 0.002)
        for rows in (1, 7, 50, 1024):
            got = rbf_gram(p, q, gamma=0.002, rows=rows)
            assert got.dtype == np.float64 and got.shape == want.shape and got.tobytes() == want.tobytes(), rows


def test_a_precomputed_kernel_too_large_for_the_memory_is_refused_naming_the_fix(monkeypatch):
    import psutil
    from pipeline.models.svm import SVMClassifier, check_gram_memory, gram_fit_bytes
    assert gram_fit_bytes(22_000) == pytest.approx(8 * 22_000 ** 2 * 1.8)   # kernel + a calibration fold's slices
    check_gram_memory(22_000, folds=5, name="svm_compare", available=10 ** 10)   # 7.0 GB of 10: fits
    with pytest.raises(ParamsError, match=r"models\.svm_compare\.gram=true: the precomputed RBF kernel over 44,000 "
                                          r"training clips needs about 27\.9 GB and 24\.0 GB of memory is available; "
                                          r"lower models\.svm_compare\.copies .* or set models\.svm_compare\.gram: false"):
        check_gram_memory(44_000, folds=5, name="svm_compare", available=24 * 10 ** 9)
    x, y = _toy(40, seed=0)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("VM", (), {"available": 10_000})())
    with pytest.raises(ParamsError, match=r"models\.svm_compare\.gram=true: .* 120 training clips"):
        SVMClassifier(num_classes=4, C=1.0, gamma="scale", name="svm_compare", gram=True).fit(x, y, class_weight=None, seed=0)
    SVMClassifier(num_classes=4, C=1.0, gamma="scale", name="svm", gram=False).fit(x, y, class_weight=None, seed=0)


def test_the_ge2e_stage_writes_the_voice_encoders_features_and_lists_a_bad_file(tmp_path):
    from pipeline import voice

    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip(GE2E_MISSING)
    paths = []
    for i, emotion in enumerate(("angry", "sad")):
        paths.append(tmp_path / f"{emotion}.wav")
        sf.write(paths[-1], speech(1.5, emotion=emotion, seed=i), SR, subtype="PCM_16")
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    table = pd.DataFrame({"clip_id": ["c:a", "c:bad", "c:s"], "path": [paths[0], tmp_path / "bad.wav", paths[1]]})
    out = functionals.folder(tmp_path / "features", "original", "c", kind="ge2e")
    summary = functionals.run(table, out, config=CONFIG, chunk_size=2, workers=1, desc="test", kind="ge2e")
    assert summary["clips"] == 2 and summary["failed"] == 1
    meta = json.loads((out / "meta.json").read_text())
    assert meta["names"] == voice.names() and meta["feature_set"].startswith("GE2E") and "bad.wav" in meta["failed"][0]
    f = dataset.load(pd.DataFrame({"clip_id": ["c:s", "c:a"], "corpus": "c"}), features_dir=tmp_path / "features",
                     kind="ge2e")
    direct = voice.ge2e(*map(np.array, zip(*[prepare(sf.read(paths[1], dtype="float32")[0], config=CONFIG)])), sr=SR)
    np.testing.assert_array_equal(f.x[0], direct[0])
    assert f.x.shape == (2, 256) and not np.array_equal(f.x[0], f.x[1])


def test_the_ge2e_stage_without_the_weights_stops_with_one_line_naming_the_install(tmp_path):
    """A Resemblyzer package without its weights file (first on the path) stops the stage before any clip."""
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "fake" / "resemblyzer").mkdir(parents=True)
    (tmp_path / "fake" / "resemblyzer" / "__init__.py").write_text("raise ImportError('never imported')\n")
    work = tmp_path / "work"
    (work / "data" / "interim" / "manifests").mkdir(parents=True)
    (work / "params.yaml").write_text((root / "params.yaml").read_text())
    pd.DataFrame({"clip_id": ["ravdess:x"], "path": ["x.wav"], "duration_s": [1.0]}).to_csv(
        work / "data" / "interim" / "manifests" / "ravdess.csv", index=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(root)])}
    done = subprocess.run([sys.executable, "-m", "pipeline.functionals", "--corpus", "ravdess", "--source", "original",
                           "--kind", "ge2e"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("functionals: ") and "pretrained.pt: missing from the Resemblyzer package" in last, done.stderr
    assert "pip install --no-deps --require-hashes -r requirements-weights.txt" in last
    assert "Traceback" not in done.stderr and not (work / "data" / "features").exists()
