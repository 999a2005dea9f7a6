"""Speaker-adversarial training of a Keras model (``models.<name>.adversary``).

A second head learns to tell the training speakers apart from the emotion model's pooled
embedding (the input of its classifier head) through a gradient-reversal layer (Ganin and
Lempitsky 2015; for emotion, e.g. Li et al. 2020, "Speaker-invariant affective representation
learning via adversarial training"): the head itself descends the speaker loss, while the
encoder below the embedding receives that loss's gradient times ``-weight``, so it is pushed
toward features that do not tell who is speaking. Training only: the emotion model is a
sub-graph of the training model (the same layers and weights), and that is what is saved: the
bundle holds no speaker layer, and inference reads it as any other bundle (the saved model is
uncompiled, as nothing trains a bundle further).

The per-example weights (``train.class_weight``) scale the whole joint loss, the speaker term
included, and the speakers are not balanced: a speaker with more training clips (TESS's one
speaker, more than half the clips on the development folds) weighs more in the speaker loss.
The training ``loss`` is the sum of both terms, ``val_loss`` the emotion's alone.

Targets travel as one row per example: the emotion's one-hot (or mixed, or smoothed) classes,
then the speaker's one-hot; a validation example has zeros for the speaker part (its speakers
are not the training speakers), which makes that part of its loss 0.
"""
from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="ser")
class GradientReversal(layers.Layer):
    """Identity forward; the gradient flowing back is multiplied by ``-weight``.

    ``-w x + stop_gradient((1 + w) x)`` has the value ``x`` and the gradient ``-w``: no custom
    gradient, so any Keras backend.
    """

    def __init__(self, *, weight: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weight = float(weight)

    def call(self, inputs: Any) -> Any:
        return -self.weight * inputs + ops.stop_gradient((1.0 + self.weight) * inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weight": self.weight}


def embedding(model: keras.Model) -> Any:
    """The symbolic input of ``model``'s classifier head (:func:`pipeline.models.layers.classifier_head`):
    the pooled embedding that its first dense layer, or with no dense layers its softmax, reads."""
    names = {layer.name for layer in model.layers}
    return model.get_layer("dense1" if "dense1" in names else "probs").input


def with_adversary(model: keras.Model, *, speakers: int, weight: float, dense: Sequence[int]) -> keras.Model:
    """The training model: ``model``'s input → its emotion probabilities and, concatenated after
    them, a speaker softmax of ``speakers`` classes over :func:`embedding` reversed by
    :class:`GradientReversal` (ReLU dense layers ``dense`` between). Shares ``model``'s layers."""
    x = GradientReversal(weight=weight, name="speaker_reversal")(embedding(model))
    for i, n in enumerate(dense, start=1):
        x = layers.Dense(n, activation="relu", name=f"speaker_dense{i}")(x)
    speaker = layers.Dense(speakers, activation="softmax", name="speaker_probs")(x)
    out = layers.Concatenate(name="emotion_and_speaker")([model.output, speaker])
    return keras.Model(model.input, out, name=f"{model.name}_adversarial")


def joint_loss(num_classes: int, *, label_smoothing: float = 0.0):
    """Loss of the training model's output: cross-entropy of the first ``num_classes`` columns
    (with ``label_smoothing``) plus that of the rest, the speaker columns (0 where their targets
    are all 0). Per example, so Keras applies sample weights as for any loss."""
    emotion = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction=None)

    def loss(y_true: Any, y_pred: Any) -> Any:
        return (emotion(y_true[:, :num_classes], y_pred[:, :num_classes])
                + keras.losses.categorical_crossentropy(y_true[:, num_classes:], y_pred[:, num_classes:]))

    return loss


def emotion_accuracy(num_classes: int) -> keras.metrics.Metric:
    """Accuracy of the emotion columns alone, named ``accuracy`` as a plain model's."""
    def accuracy(y_true: Any, y_pred: Any) -> Any:
        return ops.cast(ops.equal(ops.argmax(y_true[:, :num_classes], axis=-1),
                                  ops.argmax(y_pred[:, :num_classes], axis=-1)), "float32")

    return keras.metrics.MeanMetricWrapper(accuracy, name="accuracy")
