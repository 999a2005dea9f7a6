"""Training-batch augmentation: masks, mixup, and a Keras fit that uses them, deterministically."""
from __future__ import annotations

import numpy as np
import pytest

from fakes import PARAMS
from pipeline.batches import check_spec, make_sequence, mask, mixup
from pipeline.params import ParamsError
from pipeline.train import cosine_rate, fit

SPEC = {"time_masks": 2, "time_width": 5, "feature_masks": 1, "feature_width": 3}


def test_masks_zero_whole_spans_and_leave_the_input_untouched():
    x = np.ones((4, 30, 10), np.float32)
    out = mask(x, rng=np.random.default_rng(0), **SPEC)
    assert np.all(x == 1) and out.shape == x.shape
    zero_frames = (out == 0).all(axis=2).sum(axis=1)
    zero_cols = (out == 0).all(axis=1).sum(axis=1)
    assert np.all(zero_frames <= 2 * 5) and np.all(zero_cols <= 3) and (out == 0).any()
    # a frame is either masked whole, or only in the masked feature columns
    partly = (out == 0).any(axis=2) & ~(out == 0).all(axis=2)
    assert np.all((out == 0).sum(axis=2)[partly] <= 3)
    np.testing.assert_array_equal(mask(x[:, 0], rng=np.random.default_rng(0), **SPEC), x[:, 0])  # vectors: no masks


def test_mixup_mixes_inputs_labels_and_weights_with_the_same_coefficients():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    w = np.array([1, 2, 3, 1, 2, 3], np.float32)
    xm, ym, wm = mixup(x, y, w, rng=np.random.default_rng(5), alpha=0.4)
    np.testing.assert_allclose(ym.sum(axis=1), 1.0, atol=1e-6)
    lam = np.random.default_rng(5).beta(0.4, 0.4, size=6)
    perm = np.random.default_rng(5)
    perm.beta(0.4, 0.4, size=6)
    perm = perm.permutation(6)
    np.testing.assert_allclose(xm, lam[:, None] * x + (1 - lam[:, None]) * x[perm], rtol=1e-5)
    np.testing.assert_allclose(wm, lam * w + (1 - lam) * w[perm], rtol=1e-5)


def test_batches_cover_every_clip_each_epoch_and_do_not_depend_on_call_order():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    seq = make_sequence(x, np.arange(10) % 2, num_classes=2, class_weight={0: 1.0, 1: 3.0}, batch_size=4, seed=3,
                        mixup_alpha=0.0, spec=check_spec(None))
    seen = np.concatenate([seq[i][0][:, 0] for i in range(len(seq))])
    assert sorted(seen) == list(range(10)) and len(seq) == 3
    np.testing.assert_array_equal(seq[2][0], seq[2][0])
    assert set(seq[0][2]) <= {1.0, 3.0}
    first = [seq[i][0][:, 0].tolist() for i in range(3)]
    own = make_sequence(x, np.arange(10) % 2, num_classes=2, class_weight=None, batch_size=4, seed=3, mixup_alpha=0.0,
                        spec=check_spec(None), sample_weight=np.arange(10, dtype=np.float32) / 10)
    for i in range(3):   # each example's own weight travels with it
        np.testing.assert_array_equal(own[i][2], own[i][0][:, 0] / 10)
    seq.on_epoch_end()
    assert [seq[i][0][:, 0].tolist() for i in range(3)] != first          # reshuffled


def test_bad_augmentation_params_are_refused():
    with pytest.raises(ParamsError, match=r"models\.cnn\.specaugment is missing \['time_width', 'feature_masks', "):
        check_spec({"time_masks": 1}, key="models.cnn.specaugment")
    with pytest.raises(ParamsError, match=r"models\.cnn\.specaugment\.time_width=-1 must be >= 0"):
        check_spec({**SPEC, "time_width": -1}, key="models.cnn.specaugment")


def test_a_fit_with_masks_and_mixup_learns_and_is_deterministic():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = (rng.normal(size=(60, 12, 4)) + 3.0 * np.eye(4)[y][:, None, :]).astype(np.float32)
    cfg = {**PARAMS["train"], "epochs": 6, "batch_size": 16, "learning_rate": 0.01, "class_weight": "balanced", "threads": 2,
           "early_stopping_patience": 3, "reduce_lr_patience": 2, "reduce_lr_factor": 0.5, "mixup_alpha": 0.2}
    tiny = {"input": "sequence", "pooling": "mean", "filters": [8], "kernel_size": 3, "pool_size": 2, "dropout": 0.0, "dense": [], "mask_padding": False, "conv": "1d", "stride": 1, "specaugment": SPEC}
    runs = [fit(model_name="cnn", model_params=tiny, train_cfg=cfg, seed=1, x_train=x, y_train=y, x_val=x, y_val=y,
                labels=["a", "b", "c"], verbose=0) for _ in range(2)]
    (m1, h1), (m2, h2) = runs
    assert h1["loss"] == h2["loss"] and max(h1["val_uar"]) > 0.5
    np.testing.assert_array_equal(np.asarray(m1(x)), np.asarray(m2(x)))


def test_label_smoothing_trains_toward_softened_targets():
    """Targets 1 - s + s/k for the true class: without smoothing the top probability of a
    model that separates the classes goes to 1; with s = 0.2 and 3 classes it is pulled
    toward 0.867 (examples far from the boundary keep some more: the model is shared)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = (rng.normal(size=(60, 12, 4)) + 4.0 * np.eye(4)[y][:, None, :]).astype(np.float32)
    tiny = {"input": "sequence", "pooling": "mean", "filters": [8], "kernel_size": 3, "pool_size": 2, "dropout": 0.0,
            "dense": [], "mask_padding": False, "conv": "1d", "stride": 1, "specaugment": None}
    top = {}
    for s in (0.0, 0.2):
        cfg = {**PARAMS["train"], "epochs": 30, "batch_size": 16, "learning_rate": 0.05, "class_weight": "none", "threads": 2,
               "early_stopping_patience": 30, "reduce_lr_patience": 30, "reduce_lr_factor": 0.5, "mixup_alpha": 0.0,
               "label_smoothing": s}
        model, _ = fit(model_name="cnn", model_params=tiny, train_cfg=cfg, seed=1, x_train=x, y_train=y, x_val=None,
                       y_val=None, labels=["a", "b", "c"], verbose=0)   # no validation: every epoch, no early stopping
        p = np.asarray(model(x))
        assert np.array_equal(p.argmax(axis=1), y)
        top[s] = float(np.median(p.max(axis=1)))
    assert model.loss.get_config()["label_smoothing"] == 0.2
    assert top[0.0] > 0.99 and top[0.2] < 0.95, top


def test_cosine_rate_falls_from_the_learning_rate_toward_zero():
    rates = [cosine_rate(e, rate=0.01, epochs=4) for e in range(4)]
    np.testing.assert_allclose(rates, [0.01, 0.01 * (1 + np.cos(np.pi / 4)) / 2, 0.005, 0.01 * (1 - np.cos(np.pi / 4)) / 2])
    assert cosine_rate(9, rate=0.01, epochs=4) == 0.0       # past the last epoch (not reached by fit)


@pytest.mark.parametrize("schedule", ["plateau", "cosine"])
def test_fit_follows_the_learning_rate_schedule(schedule):
    """cosine: each epoch trains at cosine_rate (ReduceLROnPlateau off); plateau: the rate is
    halved after reduce_lr_patience epochs without a lower validation loss (patience 0 here,
    on a validation set it cannot learn: labels shuffled)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = (rng.normal(size=(60, 12, 4)) + 3.0 * np.eye(4)[y][:, None, :]).astype(np.float32)
    tiny = {"input": "sequence", "pooling": "mean", "filters": [8], "kernel_size": 3, "pool_size": 2, "dropout": 0.0,
            "dense": [], "mask_padding": False, "conv": "1d", "stride": 1, "specaugment": None}
    cfg = {**PARAMS["train"], "epochs": 5, "batch_size": 16, "learning_rate": 0.01, "threads": 1, "lr_schedule": schedule,
           "early_stopping_patience": 10, "reduce_lr_patience": 0, "reduce_lr_factor": 0.5}
    _, history = fit(model_name="cnn", model_params=tiny, train_cfg=cfg, seed=1, x_train=x, y_train=y, x_val=x,
                     y_val=rng.permutation(y), labels=["a", "b", "c"], verbose=0)
    rates = np.asarray(history["learning_rate"])
    if schedule == "cosine":
        np.testing.assert_allclose(rates, [cosine_rate(e, rate=0.01, epochs=5) for e in range(5)], rtol=1e-6)
    else:
        assert rates[0] == pytest.approx(0.01) and rates[-1] < 0.01
        assert set(np.round(rates / 0.01, 6)) <= {1.0, 0.5, 0.25, 0.125, 0.0625}   # halvings only


def test_keras_asks_for_the_masked_batches_in_a_shuffled_order(monkeypatch):
    """Keras shuffles the order in which it asks the PyDataset for batches (``fit(shuffle=True)``),
    on top of the dataset's own permutation: so it did before training streamed (commit 93374b3),
    and the real-data SpecAugment runs of commit 89baf56 reproduce bit for bit."""
    import pipeline.train as T

    calls = []
    real = T.make_sequence

    def spy(*args, **kwargs):
        seq = real(*args, **kwargs)
        getitem = type(seq).__getitem__      # the class is made inside make_sequence: patching it is local

        def recorded(self, i):
            calls.append((self.epoch, i))
            return getitem(self, i)
        type(seq).__getitem__ = recorded
        return seq

    monkeypatch.setattr(T, "make_sequence", spy)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    x = rng.normal(size=(120, 12, 4)).astype(np.float32)
    tiny = {"input": "sequence", "pooling": "mean", "filters": [4], "kernel_size": 3, "pool_size": 2, "dropout": 0.0,
            "dense": [], "mask_padding": False, "conv": "1d", "stride": 1, "specaugment": SPEC}
    cfg = {**PARAMS["train"], "epochs": 3, "batch_size": 16, "threads": 1, "mixup_alpha": 0.0, "label_smoothing": 0.0}
    fit(model_name="cnn", model_params=tiny, train_cfg=cfg, seed=1, x_train=x, y_train=y, x_val=None, y_val=None,
        labels=["a", "b", "c"], verbose=0)
    # Keras first peeks at a batch or two for the input signature; then 3 epochs of 8 batches
    orders = [[i for _, i in calls[-24:][k * 8:(k + 1) * 8]] for k in range(3)]
    assert [len({e for e, _ in calls[-24:][k * 8:(k + 1) * 8]}) for k in range(3)] == [1, 1, 1]   # one epoch each
    assert all(sorted(o) == list(range(8)) for o in orders), orders
    assert all(o != list(range(8)) for o in orders) and orders[0] != orders[1], orders
