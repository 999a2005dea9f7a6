"""Training and evaluation: beats chance, deterministic, leakage refused, metric keys and UAR."""
import json
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from fakes import PARAMS
from pipeline import bundle as B
from pipeline.metrics import compute_metrics, uar
from pipeline.speakers import LeakageError, check_unseen
from pipeline.train import class_weights, corpus_weights, fit, training_rows

LABELS = ["angry", "happy", "sad"]
TINY_CNN = {"input": "sequence", "pooling": "mean", "filters": [8], "kernel_size": 3, "pool_size": 2, "dropout": 0.0, "dense": [8], "mask_padding": False, "conv": "1d", "stride": 1, "specaugment": None}
TRAIN = {**PARAMS["train"], "epochs": 8, "batch_size": 16, "learning_rate": 0.01, "class_weight": "balanced",
         "early_stopping_patience": 8, "reduce_lr_patience": 4, "reduce_lr_factor": 0.5, "threads": 2}


def toy_set(n_per_class: int, *, seed: int, frames: int = 20, features: int = 6):
    """Sequences whose class shifts the mean of one feature band, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(LABELS)), n_per_class)
    x = rng.standard_normal((len(y), frames, features)).astype(np.float32)
    x[np.arange(len(y)), :, y] += 1.5
    return x, y


def test_training_beats_chance_and_is_deterministic():
    x, y = toy_set(30, seed=0)
    xv, yv = toy_set(10, seed=1)
    xt, yt = toy_set(20, seed=2)
    runs = []
    for _ in range(2):
        model, history = fit(model_name="cnn", model_params=TINY_CNN, train_cfg=TRAIN, seed=3, x_train=x, y_train=y,
                             x_val=xv, y_val=yv, labels=LABELS)
        proba = model.predict(xt, verbose=0)
        runs.append(compute_metrics(yt, proba, labels=LABELS, corpus=["toy"] * len(yt)))
    assert runs[0]["uar"] > 1 / len(LABELS) + 0.3, runs[0]
    assert runs[0] == runs[1]  # same seed, same metrics
    assert "val_uar" in history


def test_metrics_have_every_documented_key_and_uar_is_balanced_accuracy():
    rng = np.random.default_rng(0)
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    proba = rng.dirichlet(np.ones(3), size=len(y_true))
    corpus = ["a"] * 6 + ["b"] * 6
    m = compute_metrics(y_true, proba, labels=LABELS, corpus=corpus)
    assert {"accuracy", "uar", "macro_f1", "roc_auc", "n", "per_class", "per_corpus"} <= set(m)
    for label in LABELS:
        assert set(m["per_class"][label]) >= {"precision", "recall", "f1"}
    for c in ("a", "b"):
        assert set(m["per_corpus"][c]) == {"uar", "accuracy", "macro_f1", "n", "recall"}
    assert set(m["per_corpus"]["a"]["recall"]) == {LABELS[0], LABELS[1]}          # the classes corpus a holds
    assert m["per_corpus"]["b"]["recall"][LABELS[2]] == pytest.approx(np.mean(proba[6:].argmax(axis=1) == 2))
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y_true, proba.argmax(axis=1)))
    assert m["per_corpus"]["a"]["n"] == 6
    json.dumps(m)  # serialisable


def sklearn_uar(y_true, y_pred) -> float:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y_true, y_pred))


def sklearn_metrics(y_true, proba, *, labels, corpus) -> dict:
    """compute_metrics as it was written with scikit-learn (until 2026-12-06): the reference."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

    y_pred, present, corpus = proba.argmax(axis=1), np.unique(y_true), np.asarray(corpus)
    prec, rec, f1, sup = precision_recall_fscore_support(y_true, y_pred, labels=np.arange(len(labels)), zero_division=0)
    aucs = [roc_auc_score(y_true == c, proba[:, c]) for c in present] if len(present) > 1 else [float("nan")]
    out = {"accuracy": float(accuracy_score(y_true, y_pred)), "uar": sklearn_uar(y_true, y_pred),
           "macro_f1": float(np.mean(f1[present])), "roc_auc": float(np.mean(aucs)), "n": int(len(y_true)),
           "per_class": {label: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                                 "support": int(sup[i])} for i, label in enumerate(labels)}, "per_corpus": {}}
    for c in sorted(set(corpus)):
        m = corpus == c
        here = np.unique(y_true[m])
        _, rec_c, f1_c, _ = precision_recall_fscore_support(y_true[m], y_pred[m], labels=np.arange(len(labels)), zero_division=0)
        out["per_corpus"][c] = {"uar": sklearn_uar(y_true[m], y_pred[m]), "accuracy": float(accuracy_score(y_true[m], y_pred[m])),
                                "macro_f1": float(np.mean(f1_c[here])), "n": int(m.sum()),
                                "recall": {labels[i]: float(rec_c[i]) for i in here}}
    return out


def test_metrics_are_scikit_learns_to_the_bit():
    """Every number of compute_metrics and uar equals scikit-learn's exactly (==, not approx):
    tied probabilities, classes never predicted or predicted but absent, float32 and float64,
    one corpus holding a single class, one clip."""
    rng = np.random.default_rng(0)
    labels = ["angry", "happy", "sad", "neutral", "fearful", "disgust", "surprised"]
    for trial in range(60):
        k, n = int(rng.integers(2, 8)), int(rng.integers(1, 400))
        y = rng.integers(0, k - int(trial % 3 == 0), n)                   # at times a class is never true
        proba = rng.dirichlet(np.ones(k) * 0.5, size=n)
        if trial % 2:
            proba = np.round(proba, 1)                                      # many ties
        proba = proba.astype(np.float32 if trial % 4 == 1 else np.float64)
        corpus = rng.choice(["a", "b", "c"], size=n)
        if trial % 5 == 0:
            corpus[y == 0] = "a"
        if n > 1 and trial % 7 == 0:
            corpus[:] = np.where(y == y[0], "d", corpus)                    # corpus d holds one class
        got = compute_metrics(y, proba, labels=labels[:k], corpus=corpus)
        want = sklearn_metrics(y, proba, labels=labels[:k], corpus=corpus)
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True), trial
        y_pred = rng.integers(0, k, n)
        assert uar(y, y_pred) == sklearn_uar(y, y_pred), trial
    with pytest.raises(ValueError, match="class indices must be a 1-D array of integers"):
        uar(np.array([0.0, 1.0]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"2 labels \(each below 2\) for 3 rows"):
        compute_metrics(np.array([0, 1]), np.eye(3)[:, :2], labels=["a", "b"], corpus=["x"] * 2)


def test_evaluation_refuses_speakers_seen_in_training():
    with pytest.raises(LeakageError, match=r"test speakers \['ravdess:03'\] were seen in training"):
        check_unseen(["ravdess:03", "ravdess:04"], ["ravdess:01", "ravdess:03"])
    check_unseen(["ravdess:04"], ["ravdess:01"])


def test_copies_of_held_out_clips_are_never_trained_on_and_a_corrupt_table_is_refused(tmp_path):
    rows = pd.DataFrame({"clip_id": ["c:1", "c:2"], "split": ["train", "test"], "speaker": ["c:a", "c:b"],
                         "corpus": ["c", "c"], "label": ["sad", "sad"]})
    (tmp_path / "c").mkdir()
    table = pd.DataFrame({"clip_id": ["c:1#aug1", "c:2#aug1"], "source_id": ["c:1", "c:2"], "speaker": ["c:a", "c:b"],
                          "corpus": ["c", "c"], "label": ["sad", "sad"], "split": ["train", "test"]})
    table.to_csv(tmp_path / "c" / "augmented.csv", index=False)
    used = training_rows(rows, augment_dir=tmp_path, corpora=["c"])
    assert list(used.clip_id) == ["c:1", "c:1#aug1"] and set(used.speaker) == {"c:a"}
    table.assign(speaker="c:b").to_csv(tmp_path / "c" / "augmented.csv", index=False)  # copy of c:1 says c:b
    with pytest.raises(ValueError, match=r"augmented copies of training clips name a validation or test speaker"):
        training_rows(rows, augment_dir=tmp_path, corpora=["c"])


def test_class_weights_balance_the_classes():
    w = class_weights(np.array([0, 0, 0, 1]), 2, "balanced")
    assert w[0] * 3 == pytest.approx(w[1] * 1)
    assert class_weights(np.array([0, 1]), 2, "none") is None


def test_per_corpus_weights_balance_classes_within_each_corpus_and_overall():
    # corpus a: class 0 twice as common as class 1 (as SAVEE's neutral); corpus b: 1:3, no class 2
    y = np.array([0] * 20 + [1] * 10 + [2] * 10 + [0] * 5 + [1] * 15)
    groups = np.array(["a"] * 40 + ["b"] * 20)
    w = corpus_weights(y, groups, 3)
    assert w.dtype == np.float32 and w.shape == y.shape
    a, b = (np.bincount(y[groups == c], weights=w[groups == c], minlength=3) for c in ("a", "b"))
    # the classes both corpora hold have the same shares in each: (40 / 3) / (20 / 2) = 4 / 3 for both
    np.testing.assert_allclose(a[:2] / b[:2], 4 / 3, rtol=1e-5)
    np.testing.assert_allclose(np.bincount(y, weights=w), len(y) / 3, rtol=1e-5)                     # across classes
    # class 0 of corpus a weighs half a class-1 clip there: it is twice as common in a
    assert w[0] == pytest.approx(w[20] / 2)
    # balanced alone keeps a's 2:1 (class totals equal overall, but 0 outweighs 1 within a)
    plain = np.array([class_weights(y, 3, "balanced")[c] for c in y])
    assert np.bincount(y[:40], weights=plain[:40])[0] > 1.5 * np.bincount(y[:40], weights=plain[:40])[1]
    one = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(corpus_weights(one, np.array(["a"] * 4), 2), [class_weights(one, 2, "balanced")[c] for c in one])
    with pytest.raises(ValueError, match=r"4 labels but 3 corpus names"):
        corpus_weights(one, np.array(["a"] * 3), 2)


@pytest.mark.parametrize("model_name, params", [("cnn", TINY_CNN), ("svm", {"input": "utterance", "C": 1.0, "gamma": "scale"})])
def test_fit_with_per_corpus_weights_needs_the_corpora_and_uses_them(model_name, params):
    x, y = toy_set(12, seed=0)
    if model_name == "svm":
        x = x.mean(axis=1)
    cfg = {**TRAIN, "epochs": 2, "class_weight": "per_corpus"}
    with pytest.raises(ValueError, match=r"class_weight='per_corpus' needs the corpus of every training example"):
        fit(model_name=model_name, model_params=params, train_cfg=cfg, seed=0, x_train=x, y_train=y, x_val=None,
            y_val=None, labels=LABELS, verbose=0)
    groups = np.where(np.arange(len(y)) % 2 == 0, "a", "b")
    model, _ = fit(model_name=model_name, model_params=params, train_cfg=cfg, seed=0, x_train=x, y_train=y, x_val=None,
                   y_val=None, labels=LABELS, groups=groups, verbose=0)
    assert np.asarray(model(x)).shape == (len(y), len(LABELS))


def test_standardise_uses_real_frames_only_and_zeroes_padding():
    x = np.ones((2, 4, 3), np.float32) * 5
    x[0, 2:] = -100  # padding frames of clip 0
    n = np.array([2, 4])
    mean, std = B.fit_stats(x, n)
    assert np.allclose(mean, 5)
    z = B.standardise(x, n, mean=mean, std=std)
    assert np.all(z[0, 2:] == 0) and np.isfinite(z).all()


def test_speaker_normalisation_uses_each_speakers_own_statistics():
    x = np.concatenate([np.full((3, 2, 1), 10.0), np.full((3, 2, 1), -4.0)]).astype(np.float32)
    x[:, 0] += 1
    z = B.speaker_normalise(x, np.full(6, 2), ["a"] * 3 + ["b"] * 3)
    assert np.allclose(z[:3], z[3:])


def test_bundle_round_trip(tmp_path):
    x, y = toy_set(6, seed=0)
    model, _ = fit(model_name="cnn", model_params=TINY_CNN, train_cfg={**TRAIN, "epochs": 1}, seed=0, x_train=x,
                   y_train=y, x_val=None, y_val=None, labels=LABELS)
    mean, std = B.fit_stats(x, np.full(len(x), x.shape[1]))
    B.save(tmp_path / "b", model=model, labels=LABELS, input_kind="sequence", feature_config={"sr": 16000},
           speaker_norm=False, mean=mean, std=std, info={"train_speakers": ["s:1"]})
    bundle = B.load(tmp_path / "b")
    proba = bundle.predict_proba(x, np.full(len(x), x.shape[1]))
    assert proba.shape == (len(x), 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert bundle.labels == LABELS and bundle.feature_config == {"sr": 16000}


def test_saving_the_same_model_twice_gives_the_same_bytes(tmp_path):
    x, y = toy_set(6, seed=0)
    mean, std = B.fit_stats(x, np.full(len(x), x.shape[1]))
    digests = []
    for name in ("a", "b"):  # two fits, so two sets of Python objects (Keras saves their id())
        model, _ = fit(model_name="cnn", model_params=TINY_CNN, train_cfg={**TRAIN, "epochs": 1}, seed=0, x_train=x,
                       y_train=y, x_val=None, y_val=None, labels=LABELS)
        time.sleep(1.1)  # Keras stamps the save time in seconds
        B.save(tmp_path / name, model=model, labels=LABELS, input_kind="sequence", feature_config={"sr": 16000},
               speaker_norm=False, mean=mean, std=std, info={"train_speakers": ["s:1"]})
        digests.append({f.name: f.read_bytes() for f in sorted((tmp_path / name).iterdir())})
    assert digests[0] == digests[1]
    assert B.load(tmp_path / "a").labels == LABELS  # still loads
