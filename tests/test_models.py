"""Tests for pipeline.models: every documented option builds, bad params fail early,
.keras round trip, seeded fits are reproducible. Tiny widths keep the file fast."""
from __future__ import annotations

import itertools
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline import models
from pipeline.params import ParamsError, load

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 5
SEQUENCE = (16, 6)      # (frames, features)
UTTERANCE = (20,)       # (features,)

TINY = {
    "cnn": {"input": "sequence", "pooling": "mean", "filters": [4, 8], "kernel_size": 3, "pool_size": 2,
            "dropout": 0.1, "dense": [8], "mask_padding": False, "conv": "1d", "stride": 1, "specaugment": None,
            "copies": None, "adversary": None, "ensemble": 1, "crop_s": None, "sequence": None},
    "cnn_lstm": {"filters": [4], "kernel_size": 3, "pool_size": 2, "conv_dropout": 0.1,
                 "lstm_units": 4, "lstm_layers": 1, "bidirectional": True,
                 "pooling": "attention", "dense": [8], "dropout": 0.1, "mask_padding": False, "specaugment": None,
                 "recurrent_dropout": 0.0, "l2": 0.0, "copies": None, "adversary": None, "ensemble": 1, "crop_s": None,
                 "sequence": None},
    "svm": {"input": "functionals", "C": 1.0, "gamma": "scale", "gram": False, "train_on_val": False, "copies": None},
    "svm_compare": {"input": "compare", "C": 1.0, "gamma": "scale", "gram": True, "train_on_val": False, "copies": None},
    "svm_ge2e": {"input": "ge2e", "C": 1.0, "gamma": "scale", "gram": False, "train_on_val": False, "copies": 2},
}
KERAS = sorted(n for n in models.BUILDERS if models.is_keras(n))


def tiny(name: str, **changes) -> dict:
    return {**TINY[name], **changes}


def batch(shape: tuple[int, ...], n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype("float32")


def assert_probabilities(model: keras.Model, x: np.ndarray) -> None:
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    assert probs.shape == (len(x), NUM_CLASSES)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def build(name: str, params: dict, shape: tuple[int, ...] | None = None) -> keras.Model:
    if shape is None:
        shape = SEQUENCE if models.input_kind(name, params) == "sequence" else UTTERANCE
    return models.build(name, input_shape=shape, num_classes=NUM_CLASSES, params=params)


# --- every option builds and gives probabilities ----------------------------------------

def test_registry_and_schemas_agree_with_params_yaml():
    section = dict(load(ROOT / "params.yaml")["models"])
    models.check_fusion(section.pop(models.FUSION))
    assert sorted(section) == sorted(models.BUILDERS)
    for name, params in section.items():
        models.check_params(name, params)
        assert sorted(params) == sorted(TINY[name])


@pytest.mark.parametrize("name", KERAS)
def test_params_yaml_defaults_build(name):
    params = load(ROOT / "params.yaml")["models"][name]
    model = build(name, params)
    assert_probabilities(model, batch(model.input_shape[1:]))


def test_cnn_stats_pooling_is_mean_and_std_over_time():
    model = build("cnn", tiny("cnn", pooling="stats", filters=[4], pool_size=1, dense=[]))
    x = batch(SEQUENCE)
    inner = keras.Model(model.input, model.get_layer("stats_pool").output)
    conv = keras.Model(model.input, model.get_layer("stats_pool").input)
    h = np.asarray(conv(x, training=False))
    np.testing.assert_allclose(np.asarray(inner(x, training=False)),
                               np.concatenate([h.mean(axis=1), np.sqrt(h.var(axis=1) + 1e-6)], axis=1), rtol=1e-3, atol=1e-4)
    assert_probabilities(model, x)


@pytest.mark.parametrize("kind, shape", [("sequence", SEQUENCE), ("utterance", UTTERANCE)])
def test_cnn_inputs(kind, shape):
    params = tiny("cnn", input=kind)
    assert models.input_kind("cnn", params) == kind
    model = build("cnn", params)
    assert model.input_shape == (None, *shape)
    assert_probabilities(model, batch(shape))


@pytest.mark.parametrize("stride, steps, columns", [(1, 4, 2), (2, 2, 1)])
def test_cnn_2d_convolves_over_frames_and_columns_and_keeps_column_position(stride, steps, columns):
    """conv='2d': the (frames, features) map is one channel; 3x3 kernels; pooling on both axes;
    each step's columns x channels are flattened before pooling over time. SEQUENCE is (16, 6):
    with filters [4, 8] and pool 2, frames 16 -> 8 -> 4 (stride 1) or 16 -> 8 -> 4 -> 2 (stride 2),
    columns 6 -> 3 -> 2 (stride 1) or 6 -> 3 -> 2 -> 1 (stride 2)."""
    model = build("cnn", tiny("cnn", conv="2d", stride=stride, pooling="stats"))
    assert tuple(model.get_layer("conv1").kernel.shape) == (3, 3, 1, 4)
    assert tuple(model.get_layer("conv1").strides) == (stride, stride)
    assert model.get_layer("stats_pool").input.shape == (None, steps, columns * 8)
    assert_probabilities(model, batch(SEQUENCE))
    variable = build("cnn", tiny("cnn", conv="2d", stride=stride), (None, SEQUENCE[1]))
    assert_probabilities(variable, batch((23, SEQUENCE[1])))


def test_cnn_stride_downsamples_the_frames_of_the_first_block():
    plain, strided = (build("cnn", tiny("cnn", pooling="stats", stride=s)) for s in (1, 2))
    assert plain.get_layer("stats_pool").input.shape == (None, 4, 8)        # 16 -> 8 -> 4
    assert strided.get_layer("stats_pool").input.shape == (None, 2, 8)      # 16 -> 8 -> 4 -> 2
    assert strided.get_layer("conv1").strides == (2,) and strided.get_layer("conv2").strides == (1,)


def test_a_2d_cnn_round_trips_through_keras_files(tmp_path):
    model = build("cnn", tiny("cnn", conv="2d", stride=2, pooling="stats", mask_padding=True))
    x = batch(SEQUENCE)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(again(x, training=False)), np.asarray(model(x, training=False)), rtol=1e-6)


@pytest.mark.parametrize("pooling, bidirectional, lstm_layers",
                         list(itertools.product(["attention", "mean", "last"], [True, False], [1, 2])))
def test_cnn_lstm_options(pooling, bidirectional, lstm_layers):
    params = tiny("cnn_lstm", pooling=pooling, bidirectional=bidirectional, lstm_layers=lstm_layers)
    assert models.input_kind("cnn_lstm", params) == "sequence"
    model = build("cnn_lstm", params)
    names = {layer.name for layer in model.layers}
    prefix = "bilstm" if bidirectional else "lstm"
    assert {f"{prefix}{i}" for i in range(1, lstm_layers + 1)} <= names
    assert {"attention": "attention_pool" in names, "mean": "mean_pool" in names,
            "last": not names & {"attention_pool", "mean_pool"}}[pooling]
    assert_probabilities(model, batch(SEQUENCE))


def test_cnn_lstm_l2_penalises_every_kernel_but_the_attention_scorer():
    model = build("cnn_lstm", tiny("cnn_lstm", l2=0.01))
    kernels = [w for w in model.weights if w.path.endswith(("kernel", "recurrent_kernel"))
               and "attention" not in w.path]
    # conv1; forward and backward LSTM, each input and recurrent; dense1; probs
    assert len(kernels) == len(model.losses) == 7
    expected = sum(0.01 * np.sum(keras.ops.convert_to_numpy(w) ** 2) for w in kernels)
    np.testing.assert_allclose(float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses)), expected,
                               rtol=1e-5)
    assert not build("cnn_lstm", tiny("cnn_lstm")).losses   # 0: no penalty at all


def test_cnn_lstm_regularisation_keys_are_optional_and_off_when_left_out():
    optional = ("recurrent_dropout", "l2", "copies", "adversary", "ensemble", "crop_s")
    params = {k: v for k, v in tiny("cnn_lstm").items() if k not in optional}
    assert models.check_params("cnn_lstm", params) == {**params, "recurrent_dropout": 0.0, "l2": 0.0, "copies": None,
                                                       "adversary": None, "ensemble": 1, "crop_s": None}
    model = build("cnn_lstm", params)
    assert model.get_layer("bilstm1").forward_layer.cell.recurrent_dropout == 0 and not model.losses


def test_cnn_lstm_recurrent_dropout_is_training_only():
    model = build("cnn_lstm", tiny("cnn_lstm", filters=[], dense=[], dropout=0.0, recurrent_dropout=0.5))
    cells = [model.get_layer("bilstm1").forward_layer.cell, model.get_layer("bilstm1").backward_layer.cell]
    assert [cell.recurrent_dropout for cell in cells] == [0.5, 0.5]
    x = batch(SEQUENCE)
    run = lambda training: keras.ops.convert_to_numpy(model(x, training=training))   # noqa: E731
    np.testing.assert_array_equal(run(False), run(False))
    assert not np.allclose(run(True), run(False))            # the only dropout left is the recurrent one


def test_cnn_lstm_without_conv_front_end():
    model = build("cnn_lstm", tiny("cnn_lstm", filters=[]))
    assert not any(layer.name.startswith("conv") for layer in model.layers)
    assert_probabilities(model, batch(SEQUENCE))


def test_last_pooling_of_bidirectional_lstm_joins_both_final_states():
    model = build("cnn_lstm", tiny("cnn_lstm", pooling="last", filters=[]))
    assert model.get_layer("bilstm1").output.shape == (None, 2 * TINY["cnn_lstm"]["lstm_units"])


# --- small inputs -----------------------------------------------------------------------

@pytest.mark.parametrize("name, shape", [("cnn", (8, 6)), ("cnn", (1, 6)), ("cnn_lstm", (8, 6)),
                                         ("cnn_lstm", (3, 6))])
def test_small_inputs_build(name, shape):
    # more pooling than frames: 8 -> 4 -> 2 -> 1 -> (skipped) -> (skipped)
    params = tiny(name, filters=[4, 4, 4, 4, 4], kernel_size=5, pool_size=2)
    model = build(name, params, shape)
    assert_probabilities(model, batch(shape))


def test_small_utterance_builds():
    model = build("cnn", tiny("cnn", input="utterance", filters=[4, 4, 4], pool_size=4), (5,))
    assert_probabilities(model, batch((5,)))


def test_variable_frames():
    model = build("cnn_lstm", tiny("cnn_lstm"), (None, 6))
    assert_probabilities(model, batch((11, 6)))


# --- bad params fail before building, naming key, rule and fix --------------------------

@pytest.mark.parametrize("name, changes, match", [
    ("cnn", {"input": "frames"}, r"models\.cnn\.input='frames' is not valid; choose 'sequence' or 'utterance'"),
    ("cnn_lstm", {"pooling": "max"}, r"models\.cnn_lstm\.pooling='max' is not valid; choose 'attention', 'last' or 'mean'"),
    ("cnn", {"filters": []}, r"models\.cnn\.filters=\[\] must hold at least 1 item"),
    ("cnn", {"filters": [64, 0]}, r"models\.cnn\.filters\[1\]=0 must be > 0"),
    ("cnn", {"dense": 128}, r"models\.cnn\.dense=128 must be a list"),
    ("cnn", {"kernel_size": 2.5}, r"models\.cnn\.kernel_size=2\.5 must be an integer"),
    ("cnn", {"pool_size": 0}, r"models\.cnn\.pool_size=0 must be > 0"),
    ("cnn", {"dropout": 1.0}, r"models\.cnn\.dropout=1\.0 must be < 1"),
    ("cnn_lstm", {"lstm_layers": 0}, r"models\.cnn_lstm\.lstm_layers=0 must be > 0"),
    ("cnn_lstm", {"lstm_units": True}, r"models\.cnn_lstm\.lstm_units=True must be an integer"),
    ("cnn_lstm", {"bidirectional": "yes"}, r"models\.cnn_lstm\.bidirectional='yes' must be true or false"),
    ("cnn", {"dropuot": 0.3}, r"models\.cnn has unknown key\(s\) \['dropuot'\]; valid keys are \["),
    ("cnn", {"conv": "3d"}, r"models\.cnn\.conv='3d' is not valid; choose '1d' or '2d'"),
    ("cnn", {"stride": 0}, r"models\.cnn\.stride=0 must be > 0"),
    ("cnn_lstm", {"recurrent_dropout": 1.0}, r"models\.cnn_lstm\.recurrent_dropout=1\.0 must be < 1"),
    ("cnn_lstm", {"l2": -0.01}, r"models\.cnn_lstm\.l2=-0\.01 must be >= 0"),
])
def test_bad_params(name, changes, match):
    with pytest.raises(ParamsError, match=match):
        build(name, tiny(name, **changes), SEQUENCE)


def test_missing_key():
    params = tiny("cnn_lstm")
    del params["pooling"]
    with pytest.raises(ParamsError, match=r"models\.cnn_lstm is missing \['pooling'\]; add"):
        models.check_params("cnn_lstm", params)


def test_unknown_model_lists_valid_ones():
    with pytest.raises(ParamsError, match=r"unknown model 'lstm'; choose one of \['cnn', 'cnn_lstm', 'svm', 'svm_compare', 'svm_ge2e'\]"):
        models.input_kind("lstm", {})


@pytest.mark.parametrize("name, changes, shape", [
    ("cnn", {"input": "utterance"}, SEQUENCE),
    ("cnn", {"input": "sequence"}, UTTERANCE),
    ("cnn_lstm", {}, UTTERANCE),
    ("cnn_lstm", {}, (16, 0)),
    ("cnn", {"input": "utterance"}, (None,)),
])
def test_input_shape_must_fit_the_input_kind(name, changes, shape):
    with pytest.raises(ParamsError, match=r"input_shape .* does not fit a '\w+' model.*feed the \w+ feature array"):
        build(name, tiny(name, **changes), shape)


def test_num_classes_at_least_two():
    with pytest.raises(ParamsError, match=r"num_classes=1 must be an integer >= 2"):
        models.build("cnn", input_shape=SEQUENCE, num_classes=1, params=tiny("cnn"))


# --- .keras round trip ------------------------------------------------------------------

@pytest.mark.parametrize("name, params", [("cnn_lstm", tiny("cnn_lstm", pooling="attention")),
                                          ("cnn_lstm", tiny("cnn_lstm", recurrent_dropout=0.2, l2=1e-3)),
                                          ("cnn", tiny("cnn", input="utterance"))])
def test_keras_round_trip(tmp_path, name, params):
    model = build(name, params)
    x = batch(model.input_shape[1:], n=4)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)   # no custom_objects: registered on import
    if name == "cnn_lstm":
        assert isinstance(loaded.get_layer("attention_pool"), models.AttentionPooling)
        assert loaded.get_layer("attention_pool").units == params["lstm_units"]
        # the regularisation survives too (inference alone would not show its loss)
        assert loaded.get_layer("bilstm1").forward_layer.cell.recurrent_dropout == params["recurrent_dropout"]
        assert len(loaded.losses) == len(model.losses) == (7 if params["l2"] else 0)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


# --- determinism ------------------------------------------------------------------------

def fit_weights(name: str, params: dict, *, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Seed, build and fit a few steps; return (initial, fitted) weights."""
    keras.utils.set_random_seed(seed)
    model = build(name, params)
    initial = model.get_weights()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    x = batch(model.input_shape[1:], n=24, seed=1)
    y = np.random.default_rng(2).integers(0, NUM_CLASSES, len(x))
    model.fit(x, y, batch_size=8, epochs=2, shuffle=True, verbose=0)   # dropout + shuffling
    return initial, model.get_weights()


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


@pytest.fixture
def op_determinism():
    """Turn on TensorFlow's deterministic ops for one test, as the train stage does."""
    from tensorflow.python.framework import config   # the public API has no switch-off
    was_enabled = config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    yield
    if not was_enabled:
        config.disable_op_determinism()


@pytest.mark.usefixtures("op_determinism")
@pytest.mark.parametrize("name, params", [("cnn", tiny("cnn")),   # the cnn_lstm with attention pooling (TINY's),
                                          ("cnn_lstm", tiny("cnn_lstm", recurrent_dropout=0.3, l2=1e-3))])   # and the rest
def test_seeded_fit_is_deterministic(name, params):
    initial, first = fit_weights(name, params, seed=7)
    _, second = fit_weights(name, params, seed=7)
    assert same(first, second)
    assert not same(initial, first)                       # the fit did change the weights
    keras.utils.set_random_seed(8)
    assert not same(initial, build(name, params).get_weights())   # and the seed matters


@pytest.mark.parametrize("params, match", [
    ({"members": ["cnn"], "weights": [1]}, r"members=\['cnn'\] must list 2 or more distinct models"),
    ({"members": ["cnn", "gru"], "weights": [1, 1]}, r"must list 2 or more distinct models"),
    ({"members": ["cnn", "svm"], "weights": [1]}, r"weights=\[1\] must hold one number > 0 per member \(2\)"),
    ({"members": ["cnn", "svm"], "weights": [1, 0]}, r"models\.fusion\.weights\[1\]=0 must be > 0"),
    ({"members": ["cnn", "svm"]}, r"models\.fusion is missing \['weights'\]"),
])
def test_fusion_params_are_checked(params, match):
    with pytest.raises(ParamsError, match=match):
        models.check_fusion(params)
    assert models.check_fusion({"members": ["cnn", "svm"], "weights": [2, 1]}) == {"members": ["cnn", "svm"],
                                                                                   "weights": [2.0, 1.0]}


@pytest.mark.parametrize("name, changes", [
    ("cnn", {"pooling": "mean"}), ("cnn", {"pooling": "stats"}), ("cnn", {"pooling": "mean", "stride": 2}),
    ("cnn", {"pooling": "stats", "conv": "2d"}), ("cnn", {"pooling": "mean", "conv": "2d", "stride": 2}),
    ("cnn_lstm", {"pooling": "attention", "bidirectional": False}), ("cnn_lstm", {"pooling": "mean", "bidirectional": False})])
def test_masked_pooling_ignores_the_padding_after_a_short_clip(name, changes):
    """With mask_padding, a clip padded with zero frames (as standardise leaves padding) gets
    the prediction of the same clip padded less; without it, the padding changes it. Biases and
    batch-norm offsets are made nonzero first, so that padding frames carry activations (a
    forward LSTM reads the padding only after the clip, so its pooled steps are unchanged)."""
    x = batch((8, SEQUENCE[1]), n=2, seed=3)
    short = np.concatenate([x, np.zeros((2, 8, SEQUENCE[1]), "float32")], axis=1)     # 8 frames + 8 of padding
    longer = np.concatenate([x, np.zeros((2, 24, SEQUENCE[1]), "float32")], axis=1)   # 8 frames + 24 of padding
    probs = {}
    for mask in (True, False):
        keras.utils.set_random_seed(1)
        model = models.build(name, input_shape=(None, SEQUENCE[1]), num_classes=NUM_CLASSES,
                             params=tiny(name, mask_padding=mask, **changes))
        rng = np.random.default_rng(7)
        for layer in model.layers:
            for w in layer.weights:
                if any(k in w.path for k in ("bias", "beta", "moving_mean", "/b")):
                    w.assign(rng.normal(0, 0.5, w.shape).astype("float32"))
        probs[mask] = [np.asarray(model(v, training=False)) for v in (short, longer)]
    np.testing.assert_allclose(probs[True][0], probs[True][1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(probs[False][0], probs[False][1], rtol=1e-5, atol=1e-6)


def test_masked_attention_weighs_valid_steps_even_when_padding_scores_higher():
    """The softmax maximum is taken over valid steps only: padding with huge scores cannot
    underflow the valid steps' weights."""
    layer = models.AttentionPooling(units=2)
    x = np.zeros((1, 4, 3), "float32")
    x[0, :2] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    x[0, 2:] = 50.0                                         # padding positions with extreme values
    mask = np.array([[[1.0], [1.0], [0.0], [0.0]]], "float32")
    layer([x, mask])
    layer.w.assign(np.ones((3, 2), "float32")); layer.b.assign(np.zeros(2, "float32")); layer.v.assign(np.full(2, 100.0, "float32"))
    out = np.asarray(layer([x, mask]))
    np.testing.assert_allclose(out[0], [0.5, 0.5, 0.0], atol=1e-5)


@pytest.mark.parametrize("name, changes, match", [
    ("cnn", {"input": "utterance", "mask_padding": True}, r"models\.cnn: mask_padding=true needs input='sequence'"),
    ("cnn_lstm", {"pooling": "last", "mask_padding": True}, r"models\.cnn_lstm: mask_padding=true needs pooling"),
    ("cnn", {"input": "utterance", "conv": "2d"}, r"models\.cnn: conv='2d' convolves over frames and feature columns, "
     r"which needs input='sequence'; set conv: 1d or input: sequence$"),
    ("cnn", {"input": "utterance", "specaugment": {"time_masks": 2, "time_width": 20, "feature_masks": 0, "feature_width": 8}},
     r"models\.cnn: specaugment masks frames and feature columns, which needs input='sequence' \(got 'utterance'\); set "
     r"models\.cnn\.specaugment: null$"),
])
def test_mask_padding_where_there_is_nothing_to_mask_is_refused(name, changes, match):
    shape = UTTERANCE if changes.get("input") == "utterance" else SEQUENCE
    with pytest.raises(ParamsError, match=match):
        models.build(name, input_shape=shape, num_classes=NUM_CLASSES, params=tiny(name, **changes))


def test_a_masked_model_round_trips_through_keras_files(tmp_path):
    model = build("cnn_lstm", tiny("cnn_lstm", mask_padding=True))
    x = batch(SEQUENCE)
    x[:, 10:] = 0.0
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(again(x, training=False)), np.asarray(model(x, training=False)), rtol=1e-6)
