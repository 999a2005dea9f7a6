"""A 1-D CNN over frame features (sequence) or over the utterance feature vector."""
from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from pipeline.models.layers import FrameMask, MaskedMeanPooling, StatsPooling, classifier_head, conv_blocks
from pipeline.params import ParamsError
from pipeline.schema import CNN_INPUTS as INPUTS, CNN_POOLINGS as POOLINGS


def build_cnn(input_shape: tuple[int | None, ...], num_classes: int, *, filters: Sequence[int],
              kernel_size: int, pool_size: int, dropout: float, dense: Sequence[int],
              input: str = "sequence", pooling: str = "mean", mask_padding: bool = False,
              name: str = "cnn") -> keras.Model:
    """Build a 1-D CNN classifier.

    Parameters
    ----------
    input_shape : ``(frames, features)`` for ``input="sequence"`` (``frames`` may be None);
        ``(features,)`` for ``input="utterance"``.
    num_classes : width of the softmax output.
    filters : channels of each Conv1D block (Conv1D → BatchNorm → ReLU → MaxPool → Dropout).
    kernel_size : Conv1D kernel length, in frames (sequence) or feature bins (utterance).
    pool_size : max-pooling factor per block (1: no pooling).
    dropout : dropout rate after each conv block and each dense layer.
    dense : widths of the ReLU dense layers before the softmax; may be empty.
    input : "sequence": convolve over time, then global average pooling over time.
        "utterance": the vector is reshaped to ``(features, 1)`` and convolved along the
        feature axis, as the public write-ups do, then flattened (not averaged: a position on
        that axis is a particular feature, e.g. MFCC 3, so position matters).
    pooling : over time, for sequence input: "mean" (global average) or "stats" (mean and
        standard deviation of every channel, concatenated: the x-vector statistics pooling).
    mask_padding : sequence input only: pool over the steps that hold audio
        (:class:`~pipeline.models.layers.FrameMask`), not over the zero padding after a
        clip shorter than ``features.seconds``.

    Returns
    -------
    keras.Model
        Input (batch, *input_shape) → softmax probabilities (batch, num_classes).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not valid; choose one of {list(POOLINGS)}")
    if input not in INPUTS:
        raise ValueError(f"input={input!r} is not valid; choose one of {list(INPUTS)}")
    rank = 2 if input == "sequence" else 1
    if len(input_shape) != rank:
        expected = "(frames, features)" if rank == 2 else "(features,)"
        raise ValueError(f"input={input!r} expects input_shape {expected}, got {tuple(input_shape)}")
    if mask_padding and input != "sequence":
        raise ParamsError(f"params.yaml: models.{name}: mask_padding=true needs input='sequence' (an utterance "
                          "vector has no padding); set mask_padding: false")

    inputs = keras.Input(shape=tuple(input_shape), name=input)
    x = inputs if input == "sequence" else layers.Reshape((input_shape[0], 1), name="as_steps")(inputs)
    if mask_padding:
        x, mask = conv_blocks(x, filters=filters, kernel_size=kernel_size, pool_size=pool_size, dropout=dropout,
                              mask=FrameMask(name="frame_mask")(inputs))
        x = (StatsPooling(name="stats_pool") if pooling == "stats" else MaskedMeanPooling(name="mean_pool"))([x, mask])
    else:
        x = conv_blocks(x, filters=filters, kernel_size=kernel_size, pool_size=pool_size, dropout=dropout)
        if input == "sequence" and pooling == "stats":
            x = StatsPooling(name="stats_pool")(x)
        elif input == "sequence":
            x = layers.GlobalAveragePooling1D(name="mean_pool")(x)
        else:
            x = layers.Flatten(name="flatten")(x)
    outputs = classifier_head(x, dense=dense, dropout=dropout, num_classes=num_classes)
    return keras.Model(inputs, outputs, name=name)
