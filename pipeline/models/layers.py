"""Blocks shared by the model builders, and the attention pooling layer.

:class:`AttentionPooling` is registered with Keras (package ``ser``), so a saved ``.keras``
model that uses it reloads with ``keras.models.load_model(path)`` once :mod:`pipeline.models`
is imported.
"""
from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import layers, ops


def conv_blocks(x: Any, *, filters: Sequence[int], kernel_size: int, pool_size: int,
                dropout: float, prefix: str = "conv") -> Any:
    """Apply Conv1D → BatchNormalization → ReLU → MaxPooling1D → Dropout per ``filters``.

    Parameters
    ----------
    x : KerasTensor, shape (batch, steps, channels)
    filters : channels of each block, e.g. ``[64, 128]``; empty returns ``x`` unchanged.
    kernel_size : Conv1D kernel length in steps (``padding="same"``, so steps are kept).
    pool_size : max-pooling factor; 1 turns pooling off.
    dropout : dropout rate after each block.

    Returns
    -------
    KerasTensor, shape (batch, steps', filters[-1])
        ``steps' = ceil(steps / pool_size ** n_blocks)``: pooling uses ``padding="same"`` and
        is skipped once the axis is down to one step, so it never reaches zero.
    """
    for i, n in enumerate(filters, start=1):
        x = layers.Conv1D(n, kernel_size, padding="same", use_bias=False, name=f"{prefix}{i}")(x)
        x = layers.BatchNormalization(name=f"{prefix}{i}_bn")(x)
        x = layers.ReLU(name=f"{prefix}{i}_relu")(x)
        if pool_size > 1 and x.shape[1] != 1:
            x = layers.MaxPooling1D(pool_size, padding="same", name=f"{prefix}{i}_pool")(x)
        x = layers.Dropout(dropout, name=f"{prefix}{i}_drop")(x)
    return x


def classifier_head(x: Any, *, dense: Sequence[int], dropout: float, num_classes: int) -> Any:
    """Apply Dense(ReLU) → Dropout per entry of ``dense``, then a softmax layer ``probs``.

    ``x`` has shape (batch, features); the result has shape (batch, num_classes).
    """
    for i, n in enumerate(dense, start=1):
        x = layers.Dense(n, activation="relu", name=f"dense{i}")(x)
        x = layers.Dropout(dropout, name=f"dense{i}_drop")(x)
    return layers.Dense(num_classes, activation="softmax", name="probs")(x)


@keras.saving.register_keras_serializable(package="ser")
class AttentionPooling(layers.Layer):
    """Additive attention pooling over time (Bahdanau-style scores, one query).

    ``score_t = v · tanh(W h_t + b)``, ``alpha = softmax_t(score)``, ``out = Σ_t alpha_t h_t``.

    Parameters
    ----------
    units : width of the hidden scoring layer ``W``.

    Input shape (batch, steps, channels); output shape (batch, channels).
    """

    def __init__(self, *, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        channels = input_shape[-1]
        self.w = self.add_weight(name="w", shape=(channels, self.units), initializer="glorot_uniform")
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")
        self.v = self.add_weight(name="v", shape=(self.units,), initializer="glorot_uniform")

    def call(self, inputs: Any) -> Any:
        scores = ops.tensordot(ops.tanh(ops.matmul(inputs, self.w) + self.b), self.v, axes=1)
        # softmax over time, written out: ops.softmax warns when a short clip leaves one step
        scores = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))
        weights = scores / ops.sum(scores, axis=-1, keepdims=True)   # (batch, steps)
        return ops.sum(inputs * ops.expand_dims(weights, -1), axis=1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="ser")
class StatsPooling(layers.Layer):
    """Mean and standard deviation over time of every channel, concatenated (x-vector pooling).

    Input shape (batch, steps, channels); output shape (batch, 2 * channels).
    """

    def call(self, inputs: Any) -> Any:
        mean = ops.mean(inputs, axis=1)
        std = ops.sqrt(ops.maximum(ops.mean(ops.square(inputs), axis=1) - ops.square(mean), 0.0) + 1e-6)
        return ops.concatenate([mean, std], axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], 2 * input_shape[-1])
