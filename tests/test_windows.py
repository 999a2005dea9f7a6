"""Crops (models.<name>.crop_s, pipeline.windows): a random window of each clip in training,
the mean over windows covering the clip at validation, test and inference."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from fakes import FIT_CFG, FIT_CNN, PARAMS, SR
from pipeline import bundle as B, feed
from pipeline.batches import check_spec, make_sequence
from pipeline.export import export_bundle, feature_shape
from pipeline.extraction import FeatureConfig
from pipeline.metrics import uar
from pipeline.models import check_params
from pipeline.params import ParamsError
from pipeline.train import fit, train_on
from pipeline.windows import check_crop, cover, crop_frames, cut, mean_by_clip, predict_covering, random_starts

LABELS = ["a", "b", "c"]
CONFIG = FeatureConfig.from_params({**PARAMS["features"], "seconds": 0.5, "sequence": ["mfcc"], "n_mfcc": 6},
                                   sr=SR)                                          # 51 frames of 6 a clip
WIDTH = crop_frames({"crop_s": 0.2}, CONFIG.to_dict())                            # 21 frames a window


def indexed(n_frames: list[int], frames: int = 40) -> np.ndarray:
    """Clips whose frame t holds (clip, t) in its two columns, zero after its real frames."""
    x = np.zeros((len(n_frames), frames, 2), np.float32)
    for i, n in enumerate(n_frames):
        x[i, :n, 0], x[i, :n, 1] = i, np.arange(n)
    return x


def test_a_window_has_the_frames_of_a_clip_of_its_length():
    assert WIDTH == FeatureConfig.from_params({**PARAMS["features"], "seconds": 0.2}, sr=SR).n_frames == 21
    assert crop_frames({"crop_s": None}, {}) is None and crop_frames({}, {}) is None
    assert crop_frames({"crop_s": 3.0}, FeatureConfig.from_params({**PARAMS["features"], "seconds": 9.0}, sr=SR).to_dict()) == 301


def test_covering_windows_reach_every_real_frame_at_most_half_a_window_apart():
    n = np.array([5, 21, 22, 40, 100, 101])
    clip, starts = cover(n, width=21)
    assert np.array_equal(np.bincount(clip), [1, 1, 2, 3, 9, 9])
    for i, length in enumerate(n):
        own = starts[clip == i]
        assert own[0] == 0 and own[-1] == max(length - 21, 0)        # from the first frame to the last
        assert np.all(np.diff(own) > 0) and np.all(np.diff(own) <= 10)
    assert cover(np.zeros(0, int), width=21)[0].size == 0


def test_random_windows_lie_inside_the_real_frames_and_cut_takes_them():
    rng = np.random.default_rng(0)
    n = np.array([5, 21, 30, 40] * 500)
    starts = random_starts(n, width=21, rng=rng)
    assert np.all(starts[n <= 21] == 0) and np.all(starts + 21 <= np.maximum(n, 21))
    assert set(starts[n == 40]) == set(range(20))                   # every start is drawn
    x = indexed([30, 40])
    w = cut(x, np.array([9, 3]), width=21)
    assert w.shape == (2, 21, 2) and np.array_equal(w[0, :, 1], np.arange(9, 30)) and np.all(w[1, :, 0] == 1)


def test_the_clip_probability_is_the_mean_of_its_windows():
    probs = np.array([[1, 0], [0, 1], [0.5, 0.5], [1, 0]], np.float32)
    np.testing.assert_allclose(mean_by_clip(probs, np.array([0, 0, 0, 2]), n=3), [[0.5, 0.5], [0, 0], [1, 0]])
    x = indexed([10, 40, 33])

    def model(w):   # "probability" of class 1: the window's mean frame number, over 100
        p = w[:, :, 1].mean(axis=1) / 100
        return np.stack([1 - p, p], axis=1)
    got = predict_covering(model, x, np.array([10, 40, 33]), width=21, batch_size=3)
    clip, starts = cover(np.array([10, 40, 33]), width=21)
    for i in range(3):
        means = [x[i, s:s + 21, 1].mean() / 100 for s in starts[clip == i]]
        assert got[i, 1] == pytest.approx(np.mean(means))


def test_training_batches_are_random_windows_drawn_afresh_each_epoch():
    x, n = indexed([12, 40, 35, 40]), np.array([12, 40, 35, 40])
    source = feed.Feed(4, x.shape[1:], lambda i: x[i], n)
    seq = make_sequence(source, np.array([0, 1, 2, 0]), num_classes=3, class_weight=None, batch_size=4, seed=1,
                        mixup_alpha=0.0, spec=check_spec(None), crop=21)
    xb, _, _ = seq[0]
    assert xb.shape == (4, 21, 2)
    for row in xb:
        clip, first = int(row[0, 0]), int(row[0, 1])
        real = min(n[clip] - first, 21)
        assert np.array_equal(row[:real, 1], np.arange(first, first + real)) and first + 21 <= max(n[clip], 21)
    again = make_sequence(source, np.array([0, 1, 2, 0]), num_classes=3, class_weight=None, batch_size=4, seed=1,
                          mixup_alpha=0.0, spec=check_spec(None), crop=21)
    assert np.array_equal(again[0][0], xb)                           # seeded
    seq.on_epoch_end()
    assert not np.array_equal(seq[0][0], xb)                         # another draw next epoch


def data(seed: int = 0):
    """Clips of 40 frames, 12 to 40 of them real; the class shows in one feature column."""
    rng = np.random.default_rng(seed)
    y = np.arange(60) % 3
    n = rng.integers(12, 41, 60)
    x = (rng.normal(size=(60, 40, 6)) + 1.5 * np.eye(6)[y][:, None, :]).astype(np.float32)
    x[np.arange(40)[None, :] >= n[:, None]] = 0.0
    return feed.Feed(60, (40, 6), lambda i: x[i], n), y, x, n


def test_a_cropping_fit_takes_windows_and_is_validated_on_whole_clips():
    train, y, x, n = data()
    val = feed.Feed(30, (40, 6), lambda i: x[1::2][i], n[1::2])
    params, cfg = {**FIT_CNN, "crop_s": 0.2}, {**FIT_CFG, "epochs": 1}
    kwargs = dict(model_name="cnn", model_params=params, train_cfg=cfg, seed=3, x_train=train, y_train=y,
                  x_val=val, y_val=y[1::2], labels=LABELS, verbose=0)
    model, history = fit(crop=21, **kwargs)
    assert tuple(model.input_shape) == (None, 21, 6)
    whole = predict_covering(lambda w: model(w, training=False), x[1::2], n[1::2], width=21)
    assert history["val_uar"] == [uar(y[1::2], np.argmax(whole, axis=1))]
    again, _ = fit(crop=21, **kwargs)
    np.testing.assert_array_equal(np.asarray(again(x[:, :21])), np.asarray(model(x[:, :21])))   # deterministic
    with pytest.raises(ValueError, match=r"models\.cnn\.crop_s is 0\.2: pass its window in frames"):
        fit(**kwargs)
    ens, h = fit(crop=21, **{**kwargs, "model_params": {**params, "ensemble": 2}})
    whole = predict_covering(lambda w: ens(w, training=False), x[1::2], n[1::2], width=21)
    assert h["val_uar_ensemble"] == [uar(y[1::2], np.argmax(whole, axis=1))]


def test_a_cropping_bundle_predicts_the_mean_of_the_windows_covering_each_clip(tmp_path):
    _, y, x, n = data(1)
    model, _ = fit(model_name="cnn", model_params={**FIT_CNN, "crop_s": 0.2}, train_cfg={**FIT_CFG, "epochs": 2},
                   seed=0, x_train=x, y_train=y, x_val=None, y_val=None, labels=LABELS, crop=WIDTH, verbose=0)
    x51 = np.concatenate([x, np.zeros((60, 11, 6), np.float32)], axis=1)    # the cache's 51 frames
    mean, std = B.fit_stats(x51, n)
    B.save(tmp_path, model=model, labels=LABELS, input_kind="sequence", feature_config=CONFIG.to_dict(),
           speaker_norm=False, mean=mean, std=std, info={"model_params": {**FIT_CNN, "crop_s": 0.2}})
    bundle = B.load(tmp_path)
    assert bundle.crop_frames == WIDTH and feature_shape(bundle) == (WIDTH, 6) == (WIDTH, len(CONFIG.sequence_names()))
    z = B.standardise(x51, n, mean=mean, std=std)
    expected = predict_covering(lambda w: model(w, training=False), z, n, width=WIDTH)
    np.testing.assert_allclose(bundle.predict_proba(x51, n), expected, rtol=1e-6)
    short = n <= WIDTH                                                # one window: the plain model on the start
    np.testing.assert_allclose(bundle.predict_proba(x51[short], n[short]), np.asarray(model(z[short, :WIDTH])), rtol=1e-5)
    assert bundle.predict_proba(x51[:0], n[:0]).shape == (0, 3)
    export_bundle(tmp_path)                                            # export.json spells the windows out
    spec = json.loads((tmp_path / "export.json").read_text())
    assert spec["input_shape"] == [1, WIDTH, len(CONFIG.sequence_names())] and spec["windows"]["frames"] == WIDTH
    for length in (5, 21, 22, 37, 51):
        starts = eval(spec["windows"]["starts"], {"rint": np.rint, "linspace": np.linspace, "ceil": math.ceil,
                                                  "max": max, "n": length})
        assert np.array_equal(starts, cover(np.array([length]), width=WIDTH)[1])


def test_crop_params_are_checked():
    assert check_params("cnn", FIT_CNN).get("crop_s") is None
    assert check_params("cnn_lstm", {**PARAMS["models"]["cnn_lstm"], "crop_s": 3.0})["crop_s"] == 3.0
    for bad in (0, -1.0, "3 s"):
        with pytest.raises(ParamsError, match=r"models\.cnn\.crop_s"):
            check_params("cnn", {**FIT_CNN, "crop_s": bad})
    with pytest.raises(ParamsError, match=r"models\.svm has unknown key"):
        check_params("svm", {**PARAMS["models"]["svm"], "crop_s": 3.0})
    with pytest.raises(ParamsError, match=r"models\.cnn\.crop_s: 0\.01 s gives 160 samples at 16000 Hz, fewer than "
                                          r"features\.n_fft=512; raise"):
        crop_frames({"crop_s": 0.01}, CONFIG.to_dict(), key="models.cnn.crop_s")
    with pytest.raises(ParamsError, match=r"models\.cnn\.crop_s: 3\.0 s is not shorter than the cached clips "
                                         r"\(features\.seconds: 3\.0\); raise features\.seconds"):
        check_crop(301, kind="sequence", frames=301, crop_s=3.0, seconds=3.0, key="models.cnn.crop_s")
    with pytest.raises(ParamsError, match=r"crops frame sequences, and this model reads utterance vectors"):
        check_crop(301, kind="utterance", frames=901, crop_s=3.0, seconds=9.0, key="models.cnn.crop_s")
    check_crop(None, kind="utterance", frames=1, crop_s=None, seconds=1.0, key="models.cnn.crop_s")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One corpus of 4 speakers x 30 clips cached as the features stage writes it, 51 frames of
    which 12 to 51 are real, with the config in meta.json; no augmented copies."""
    base = tmp_path_factory.mktemp("windows")
    rng = np.random.default_rng(0)
    where = base / "features" / "original" / "ravdess"
    where.mkdir(parents=True)
    ids = [f"ravdess:{s}_{i}" for s in range(4) for i in range(30)]
    y = np.arange(120) % 3
    n = rng.integers(12, 52, 120).astype(np.int32)
    x = rng.normal(size=(120, 51, 6)) + 1.5 * np.eye(6)[y][:, None, :]
    x[np.arange(51)[None, :] >= n[:, None]] = 0.0
    np.save(where / "sequence.npy", x.astype(np.float16))
    np.save(where / "n_frames.npy", n)
    pd.DataFrame({"clip_id": ids}).to_csv(where / "index.csv", index=False)
    (where / "meta.json").write_text(json.dumps({"config": CONFIG.to_dict(), "dtype": "float16"}))
    (base / "augment" / "ravdess").mkdir(parents=True)
    pd.DataFrame(columns=["clip_id", "source_id", "corpus", "speaker", "label"]).to_csv(
        base / "augment" / "ravdess" / "augmented.csv", index=False)
    rows = pd.DataFrame({"clip_id": ids, "corpus": "ravdess", "speaker": [f"ravdess:{k // 30}" for k in range(120)],
                         "label": [LABELS[v] for v in y], "split": ["train"] * 60 + ["val"] * 30 + ["test"] * 30})
    return base, rows


def test_train_on_crops_from_params_and_refuses_a_window_as_long_as_the_clip(cache):
    base, rows = cache
    kwargs = dict(cfg={**FIT_CFG, "epochs": 2, "speaker_norm": False}, seed=0, labels=LABELS,
                  features_dir=base / "features", augment_dir=base / "augment", verbose=0)
    trained = train_on(rows, name="cnn", model_params={**FIT_CNN, "crop_s": 0.2}, **kwargs)
    assert tuple(trained.bundle.model.input_shape) == (None, WIDTH, 6) and trained.bundle.crop_frames == WIDTH
    sources = feed.open_inputs(rows[rows.split == "test"], features_dir=base / "features", kinds=["sequence"])
    probs = feed.predict(trained.bundle, sources)
    assert probs.shape == (30, 3) and np.allclose(probs.sum(axis=1), 1)
    with pytest.raises(ParamsError, match=r"models\.cnn\.crop_s: 0\.5 s is not shorter than the cached clips"):
        train_on(rows, name="cnn", model_params={**FIT_CNN, "crop_s": 0.5}, **kwargs)
