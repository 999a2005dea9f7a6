"""Seed ensembles (models.<name>.ensemble): n networks fitted with their own seeds, saved as
one model that averages their probabilities."""
from __future__ import annotations

import numpy as np
import pytest

from fakes import FIT_CFG, FIT_CNN, PARAMS
from pipeline import bundle as B
from pipeline.export import TFLiteModel, to_tflite
from pipeline.models import build, check_params
from pipeline.params import ParamsError
from pipeline.metrics import uar
from pipeline.train import ENSEMBLE_SEED_STEP, best_val_uar, epochs_trained, fit

LABELS = ["a", "b", "c"]
TINY, CFG = FIT_CNN, {**FIT_CFG, "epochs": 6}


def data():
    rng = np.random.default_rng(0)
    y = np.arange(48) % 3
    x = (rng.normal(size=(48, 12, 6)) + 1.5 * np.eye(6)[y][:, None, :]).astype(np.float32)
    return x, y


def test_ensemble_params_are_checked_and_default_to_one_network():
    assert check_params("cnn", TINY)["ensemble"] == 1
    assert check_params("cnn_lstm", {**PARAMS["models"]["cnn_lstm"], "ensemble": 3})["ensemble"] == 3
    for bad in (0, -1, 1.5):
        with pytest.raises(ParamsError, match=r"models\.cnn\.ensemble"):
            check_params("cnn", {**TINY, "ensemble": bad})
    with pytest.raises(ParamsError, match=r"models\.svm has unknown key\(s\) \[.ensemble.\]"):   # an SVM is deterministic
        check_params("svm", {**PARAMS["models"]["svm"], "ensemble": 2})
    assert build("cnn", input_shape=(12, 6), num_classes=3, params={**TINY, "ensemble": 2}).output.shape[-1] == 3


def test_an_ensemble_is_the_mean_of_the_single_networks_of_its_member_seeds(tmp_path):
    """Member k is exactly the single network fitted with seed + 1000 k; the saved model
    averages them, and saves, loads and exports (TensorFlow Lite) as one model."""
    x, y = data()
    kwargs = dict(train_cfg=CFG, x_train=x, y_train=y, x_val=x[1::2], y_val=y[1::2], labels=LABELS, verbose=0)
    model, history = fit(model_name="cnn", model_params={**TINY, "ensemble": 2}, seed=5, **kwargs)
    singles = [fit(model_name="cnn", model_params=TINY, seed=5 + ENSEMBLE_SEED_STEP * k, **kwargs) for k in (0, 1)]
    probs = [np.asarray(m(x)) for m, _ in singles]
    assert not np.allclose(probs[0], probs[1])       # the members differ (their seeds)
    np.testing.assert_allclose(np.asarray(model(x)), (probs[0] + probs[1]) / 2, rtol=1e-5, atol=1e-7)
    # the history: the members' epochs one after another, and the averaged model's own validation UAR
    assert history["loss"] == singles[0][1]["loss"] + singles[1][1]["loss"]
    assert len(history["val_uar"]) == 2 * CFG["epochs"]
    assert history["val_uar_ensemble"] == [uar(y[1::2], np.argmax(np.asarray(model(x[1::2])), axis=1))]
    assert best_val_uar(history) == history["val_uar_ensemble"][0]
    assert epochs_trained(history) == [CFG["epochs"]] * 2 and epochs_trained(singles[0][1]) == [CFG["epochs"]]
    # deterministic, then, as each member is: a seeded fit gives the same weights (tests/test_models.py)
    B.save(tmp_path, model=model, labels=LABELS, input_kind="sequence", feature_config={}, speaker_norm=False,
           mean=np.zeros(6, np.float32), std=np.ones(6, np.float32), info={})
    saved = B.load(tmp_path).model
    np.testing.assert_allclose(np.asarray(saved(x)), np.asarray(model(x)), rtol=1e-6)
    lite = TFLiteModel(to_tflite(saved, input_shape=(12, 6)))
    np.testing.assert_allclose(lite(x[:4]), np.asarray(model(x[:4])), rtol=1e-4, atol=1e-6)


def test_one_network_is_the_plain_fit():
    x, y = data()
    kwargs = dict(train_cfg=CFG, x_train=x, y_train=y, x_val=x[1::2], y_val=y[1::2], labels=LABELS, verbose=0)
    (a, ha), (b, hb) = (fit(model_name="cnn", model_params=p, seed=5, **kwargs) for p in (TINY, {**TINY, "ensemble": 1}))
    assert "val_uar_ensemble" not in hb and ha["loss"] == hb["loss"]
    np.testing.assert_array_equal(np.asarray(a(x)), np.asarray(b(x)))


def test_members_stop_early_each_on_their_own_and_the_epochs_add_up():
    """Early stopping per member: members of different lengths, counted one by one. On the cnn
    only: the members are fitted and averaged whatever the network (``fit_ensemble``), and the
    cnn_lstm's six fits cost CI minutes (258 s of it at af54099). That member k is the single
    fit of its seed, early stopping and all, is the test above (the same code path)."""
    x, y = data()
    params = {**TINY, "specaugment": None, "ensemble": 3}
    cfg = {**CFG, "epochs": 12, "early_stopping_patience": 1, "learning_rate": 0.05}
    kwargs = dict(train_cfg=cfg, x_train=x, y_train=y, x_val=x[1::2], y_val=y[1::2], labels=LABELS, verbose=0)
    _, history = fit(model_name="cnn", model_params=params, seed=1, **kwargs)
    epochs = epochs_trained(history)
    assert len(epochs) == 3 and len(history["loss"]) == len(history["val_uar"]) == sum(epochs)
    assert all(e < cfg["epochs"] for e in epochs) and len(set(epochs)) > 1, epochs
