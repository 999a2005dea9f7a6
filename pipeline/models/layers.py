"""Blocks shared by the model builders, and the pooling layers.

:class:`AttentionPooling`, :class:`StatsPooling`, :class:`FrameMask` and
:class:`MaskedMeanPooling` are registered with Keras (package ``ser``), so a saved ``.keras``
model that uses them reloads with ``keras.models.load_model(path)`` once :mod:`pipeline.models`
is imported.
"""
from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import layers, ops


def conv_blocks(x: Any, *, filters: Sequence[int], kernel_size: int, pool_size: int,
                dropout: float, prefix: str = "conv", mask: Any = None, stride: int = 1, dims: int = 1,
                l2: float = 0.0) -> Any:
    """Apply Conv → BatchNormalization → ReLU → MaxPool → Dropout per ``filters``: Conv1D and
    MaxPooling1D over (batch, steps, channels) for ``dims=1``; for ``dims=2``, Conv2D with
    ``kernel_size`` x ``kernel_size`` kernels and MaxPooling2D on both axes over a (batch,
    frames, columns, channels) map, time first.

    With ``mask`` (a :class:`FrameMask` of the frames, (batch, frames, 1)), returns
    ``(x, mask)``: the mask downsampled in time like the frames, so a step is valid when any
    frame it covers is.

    Parameters
    ----------
    x : KerasTensor, shape (batch, steps, channels), or (batch, frames, columns, channels)
    filters : channels of each block, e.g. ``[64, 128]``; empty returns ``x`` unchanged.
    kernel_size : kernel length in steps (``padding="same"``, so steps are kept).
    pool_size : max-pooling factor (on each axis); 1 turns pooling off.
    dropout : dropout rate after each block.
    stride : stride of the first block's convolution (1: none; on both axes for ``dims=2``),
        which downsamples by it.
    dims : 1 or 2, the convolution's axes.
    l2 : L2 penalty factor on each convolution's kernel (:func:`l2_penalty`); 0: none.

    Returns
    -------
    KerasTensor, shape (batch, steps', filters[-1]) (or (batch, steps', columns', filters[-1]))
        ``steps' = ceil(steps / (stride * pool_size ** n_blocks))``: pooling uses
        ``padding="same"`` and an axis already down to one step is not pooled further, so it
        never reaches zero.
    """
    conv, pooling = (layers.Conv1D, layers.MaxPooling1D) if dims == 1 else (layers.Conv2D, layers.MaxPooling2D)
    for i, n in enumerate(filters, start=1):
        strides = stride if i == 1 else 1
        x = conv(n, kernel_size, strides=strides, padding="same", use_bias=False,
                 kernel_regularizer=l2_penalty(l2), name=f"{prefix}{i}")(x)
        if strides > 1 and mask is not None:
            mask = layers.MaxPooling1D(strides, padding="same", name=f"{prefix}{i}_mask_stride")(mask)
        x = layers.BatchNormalization(name=f"{prefix}{i}_bn")(x)
        x = layers.ReLU(name=f"{prefix}{i}_relu")(x)
        pool = tuple(pool_size if size != 1 else 1 for size in x.shape[1:1 + dims])
        if pool_size > 1 and max(pool) > 1:
            x = pooling(pool if dims == 2 else pool[0], padding="same", name=f"{prefix}{i}_pool")(x)
            if mask is not None and pool[0] > 1:
                mask = layers.MaxPooling1D(pool[0], padding="same", name=f"{prefix}{i}_mask_pool")(mask)
        x = layers.Dropout(dropout, name=f"{prefix}{i}_drop")(x)
    return x if mask is None else (x, mask)


def l2_penalty(factor: float) -> keras.regularizers.Regularizer | None:
    """A kernel regularizer adding ``factor * sum(kernel ** 2)`` to the training loss, or None for 0."""
    return keras.regularizers.L2(float(factor)) if factor else None


def classifier_head(x: Any, *, dense: Sequence[int], dropout: float, num_classes: int, l2: float = 0.0) -> Any:
    """Apply Dense(ReLU) → Dropout per entry of ``dense``, then a softmax layer ``probs``.

    ``x`` has shape (batch, features); the result has shape (batch, num_classes). ``l2``
    penalises every Dense kernel, the softmax layer's included (:func:`l2_penalty`).
    """
    for i, n in enumerate(dense, start=1):
        x = layers.Dense(n, activation="relu", kernel_regularizer=l2_penalty(l2), name=f"dense{i}")(x)
        x = layers.Dropout(dropout, name=f"dense{i}_drop")(x)
    return layers.Dense(num_classes, activation="softmax", kernel_regularizer=l2_penalty(l2), name="probs")(x)


@keras.saving.register_keras_serializable(package="ser")
class FrameMask(layers.Layer):
    """(batch, steps, features) → (batch, steps, 1) float: 1 for a frame that holds audio.

    Standardisation (:func:`pipeline.bundle.standardise`) sets the zero padding after a short
    clip to exactly 0 in every feature, while a frame of real audio, silence included, has
    nonzero standardised features; so a frame is padding exactly when all its features are 0.
    (SpecAugment's time masks, ``models.<name>.specaugment``, also set whole training frames to 0, so
    with both on, a masked span counts as padding in training.)
    """

    def call(self, inputs: Any) -> Any:
        return ops.cast(ops.any(ops.not_equal(inputs, 0.0), axis=-1, keepdims=True), inputs.dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], 1)


def _masked_mean(x: Any, mask: Any) -> Any:
    """Mean over steps of the valid steps (``mask`` (batch, steps, 1)); 0 for a clip without any."""
    return ops.sum(x * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="ser")
class MaskedMeanPooling(layers.Layer):
    """Mean over time of the steps that hold audio: inputs ``[x, mask]``, x (batch, steps,
    channels), mask (batch, steps, 1) from :class:`FrameMask`; output (batch, channels). After
    convolutions only (``cnn``), the embedding of a clip then does not depend on how much
    padding follows it; after a bidirectional LSTM the steps themselves have seen the padding."""

    def call(self, inputs: Any) -> Any:
        x, mask = inputs
        return _masked_mean(x, mask)

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        return (input_shape[0][0], input_shape[0][-1])


@keras.saving.register_keras_serializable(package="ser")
class AttentionPooling(layers.Layer):
    """Additive attention pooling over time (Bahdanau-style scores, one query); called on
    ``[x, mask]`` (mask of :class:`FrameMask`), the padding steps get no weight.

    ``score_t = v · tanh(W h_t + b)``, ``alpha = softmax_t(score)``, ``out = Σ_t alpha_t h_t``.

    Parameters
    ----------
    units : width of the hidden scoring layer ``W``.

    Input shape (batch, steps, channels); output shape (batch, channels).
    """

    def __init__(self, *, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape: Any) -> None:
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            input_shape = input_shape[0]             # [x, mask]
        channels = input_shape[-1]
        self.w = self.add_weight(name="w", shape=(channels, self.units), initializer="glorot_uniform")
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")
        self.v = self.add_weight(name="v", shape=(self.units,), initializer="glorot_uniform")

    def call(self, inputs: Any) -> Any:
        x, mask = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
        scores = ops.tensordot(ops.tanh(ops.matmul(x, self.w) + self.b), self.v, axes=1)
        if mask is not None:   # padding gets no weight ([x, mask], mask (batch, steps, 1) of FrameMask)
            valid = ops.squeeze(mask, -1)
            scores = ops.where(valid > 0, scores, -1e9)    # the maximum below is over valid steps only
        # softmax over time, written out: ops.softmax warns when a short clip leaves one step
        scores = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))
        if mask is not None:
            scores = scores * valid                         # a clip without valid steps pools to 0
        weights = scores / ops.maximum(ops.sum(scores, axis=-1, keepdims=True), 1e-12)   # (batch, steps)
        return ops.sum(x * ops.expand_dims(weights, -1), axis=1)

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)) \
            else input_shape
        return (shape[0], shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="ser")
class StatsPooling(layers.Layer):
    """Mean and standard deviation over time of every channel, concatenated (x-vector pooling).

    Input shape (batch, steps, channels); output shape (batch, 2 * channels).
    """

    def call(self, inputs: Any) -> Any:
        if isinstance(inputs, (list, tuple)):   # [x, mask]: statistics of the steps that hold audio
            x, mask = inputs
            mean, square = _masked_mean(x, mask), _masked_mean(ops.square(x), mask)
        else:
            mean, square = ops.mean(inputs, axis=1), ops.mean(ops.square(inputs), axis=1)
        std = ops.sqrt(ops.maximum(square - ops.square(mean), 0.0) + 1e-6)
        return ops.concatenate([mean, std], axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)) \
            else input_shape
        return (shape[0], 2 * shape[-1])
