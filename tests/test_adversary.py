"""Speaker-adversarial training (models.<name>.adversary): the gradient reversal, the joint
targets and loss, where the reversed gradient goes, and that the saved model stays the plain
emotion model."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from fakes import FIT_CFG, FIT_CNN, TINY as FAKE_TINY
from pipeline import bundle as B
from pipeline.batches import make_sequence
from pipeline.models import build, check_params
from pipeline.models.adversary import GradientReversal, embedding, joint_loss, with_adversary
from pipeline.params import ParamsError
from pipeline.train import fit

LABELS = ["a", "b", "c"]
TINY, CFG = FIT_CNN, FIT_CFG


def test_gradient_reversal_is_the_identity_forward_and_negates_the_gradient():
    x = tf.constant([[1.0, -2.0, 3.5]])
    layer = GradientReversal(weight=0.3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        total = tf.reduce_sum(y * tf.constant([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(y.numpy(), x.numpy(), rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(total, x).numpy(), [[-0.3, -0.6, -0.9]], rtol=1e-6)
    assert GradientReversal.from_config(layer.get_config()).weight == 0.3


def test_joint_loss_adds_the_speaker_term_only_where_there_are_speaker_targets():
    probs = np.array([[0.7, 0.2, 0.1, 0.25, 0.75], [0.1, 0.8, 0.1, 0.5, 0.5]], np.float32)
    with_speaker = np.array([[1, 0, 0, 0, 1], [0, 1, 0, 1, 0]], np.float32)
    validation = np.array([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]], np.float32)   # no speaker targets
    loss = joint_loss(3)
    np.testing.assert_allclose(np.asarray(loss(validation, probs)), -np.log([0.7, 0.8]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(loss(with_speaker, probs)), -np.log([0.7 * 0.75, 0.8 * 0.5]), rtol=1e-5)
    smoothed = joint_loss(3, label_smoothing=0.3)   # the emotion targets only: still no speaker loss in validation
    soft = validation[:, :3] * 0.7 + 0.1
    np.testing.assert_allclose(np.asarray(smoothed(validation, probs)), -(soft * np.log(probs[:, :3])).sum(1), rtol=1e-5)


def test_batches_carry_the_speaker_one_hot_after_the_classes_and_mixup_mixes_both():
    x = np.zeros((10, 4, 2), np.float32)
    y, speakers = np.arange(10) % 3, np.arange(10) % 4
    spec = dict.fromkeys(("time_masks", "time_width", "feature_masks", "feature_width"), 0)
    plain = make_sequence(x, y, num_classes=3, class_weight=None, batch_size=10, seed=0, mixup_alpha=0.0, spec=spec,
                          speakers=speakers, num_speakers=4)
    _, yb, _ = plain[0]
    assert yb.shape == (10, 7)
    np.testing.assert_array_equal(yb[:, :3].argmax(1), y)      # batch 0 holds every clip, in order
    np.testing.assert_array_equal(yb[:, 3:].argmax(1), speakers)
    own = np.arange(10)   # every clip its own speaker: the speaker half then says which clips were mixed, and how
    mixed = make_sequence(x, y, num_classes=3, class_weight=None, batch_size=10, seed=0, mixup_alpha=0.4, spec=spec,
                          speakers=own, num_speakers=10)
    _, yb, _ = mixed[0]
    assert ((yb[:, 3:] > 0).sum(1) > 1).any()
    np.testing.assert_allclose(yb[:, 3:].sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(yb[:, :3], yb[:, 3:] @ np.eye(3)[y], rtol=1e-6, atol=1e-7)   # same clips, same weights


@pytest.mark.parametrize("name, width", [("cnn", 8), ("cnn_lstm", 8)])
def test_the_training_model_shares_the_emotion_models_layers(name, width):
    params = TINY if name == "cnn" else FAKE_TINY["cnn_lstm"]
    model = build(name, input_shape=(12, 6), num_classes=3, params=params)
    trainer = with_adversary(model, speakers=4, weight=1.0, dense=[8])
    assert trainer.output.shape[-1] == 3 + 4
    assert embedding(model).shape[-1] == width      # the pooled embedding, the input of dense1
    x = np.random.default_rng(0).normal(size=(5, 12, 6)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(trainer(x))[:, :3], np.asarray(model(x)), rtol=1e-6)


def test_adversary_params_are_checked():
    assert check_params("cnn", {**TINY, "adversary": {"weight": 0.5, "dense": [16]}})["adversary"] == \
        {"weight": 0.5, "dense": [16]}
    with pytest.raises(ParamsError, match=r"models\.cnn\.adversary\.weight"):
        check_params("cnn", {**TINY, "adversary": {"weight": 0, "dense": [16]}})
    with pytest.raises(ParamsError, match=r"models\.cnn\.adversary"):
        check_params("cnn", {**TINY, "adversary": {"weight": 0.5}})
    with pytest.raises(ValueError, match=r"models\.cnn\.adversary needs the speaker of every training example"):
        fit(model_name="cnn", model_params={**TINY, "adversary": {"weight": 1.0, "dense": [8]}}, train_cfg=CFG,
            seed=0, x_train=np.zeros((6, 12, 6), np.float32), y_train=np.arange(6) % 3, x_val=None, y_val=None,
            labels=LABELS, verbose=0)
    with pytest.raises(ValueError, match=r"models\.cnn\.adversary: 5 speakers for 6 training examples"):
        fit(model_name="cnn", model_params={**TINY, "adversary": {"weight": 1.0, "dense": [8]}}, train_cfg=CFG,
            seed=0, x_train=np.zeros((6, 12, 6), np.float32), y_train=np.arange(6) % 3, x_val=None, y_val=None,
            labels=LABELS, speakers=["s"] * 5, verbose=0)


def test_the_encoder_gets_the_speaker_losss_gradient_reversed_and_the_head_its_own():
    """The speaker loss's gradient on every encoder weight is -weight times the one an ordinary
    head (no reversal) would send; on the speaker head's own weights it is unchanged."""
    keras.utils.set_random_seed(0)
    model = build("cnn", input_shape=(12, 6), num_classes=3, params=TINY)
    trainer = with_adversary(model, speakers=4, weight=0.5, dense=[8])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 12, 6)).astype(np.float32)
    y = np.concatenate([np.zeros((16, 3)), np.eye(4)[np.arange(16) % 4]], axis=1).astype(np.float32)  # speaker part only
    reversal = trainer.get_layer("speaker_reversal")

    def gradients(weight: float) -> dict[str, np.ndarray]:
        reversal.weight = weight
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(joint_loss(3)(y, trainer(x, training=False)))
        grads = tape.gradient(loss, trainer.trainable_weights)
        return {v.path: g.numpy() for v, g in zip(trainer.trainable_weights, grads) if g is not None}

    reversed_, plain = gradients(0.5), gradients(-1.0)   # weight -1: the identity, gradient and all
    head = [k for k in plain if k.startswith("speaker")]
    emotion_head = [k for k in plain if k.startswith(("dense1", "probs"))]   # not below the embedding: no gradient
    encoder = [k for k in plain if k not in head and k not in emotion_head]
    assert encoder and head and emotion_head and any(np.abs(plain[k]).max() > 0 for k in encoder)
    assert not any(np.abs(plain[k]).max() for k in emotion_head)
    for k in encoder:
        np.testing.assert_allclose(reversed_[k], -0.5 * plain[k], rtol=1e-4, atol=1e-7)
    for k in head:
        np.testing.assert_allclose(reversed_[k], plain[k], rtol=1e-5, atol=1e-7)


def test_an_adversarial_fit_learns_the_emotion_is_deterministic_and_the_bundle_holds_the_emotion_model(tmp_path):
    rng = np.random.default_rng(0)
    y, speakers = np.arange(96) % 3, np.array(["s1", "s2", "s3", "s4"])[(np.arange(96) // 3) % 4]
    x = (rng.normal(size=(96, 12, 6)) + 2.0 * np.eye(6)[y][:, None, :]).astype(np.float32)
    params = {**TINY, "adversary": {"weight": 1.0, "dense": [16]}}
    runs = [fit(model_name="cnn", model_params=params, train_cfg={**CFG, "epochs": 10}, seed=2, x_train=x, y_train=y,
                x_val=x[::4], y_val=y[::4], labels=LABELS, speakers=speakers, verbose=0) for _ in range(2)]
    (m1, h1), (m2, h2) = runs
    assert h1["loss"] == h2["loss"] and max(h1["val_uar"]) > 0.9, h1["val_uar"]
    assert set(h1) >= {"accuracy", "loss", "val_loss", "val_uar"}
    assert h1["loss"][-1] > h1["val_loss"][-1] + 0.5     # training adds the speaker term (about log 4), validation not
    np.testing.assert_array_equal(np.asarray(m1(x)), np.asarray(m2(x)))
    B.save(tmp_path, model=m1, labels=LABELS, input_kind="sequence", feature_config={}, speaker_norm=False,
           mean=np.zeros(6, np.float32), std=np.ones(6, np.float32), info={})
    saved = B.load(tmp_path).model                 # what the bundle holds: the emotion model alone
    assert saved.output.shape[-1] == len(LABELS) and not any("speaker" in layer.name for layer in saved.layers)
    np.testing.assert_allclose(np.asarray(saved(x)), np.asarray(m1(x)), rtol=1e-6)
