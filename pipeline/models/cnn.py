"""A 1-D CNN over frame features (sequence) or over the utterance feature vector."""
from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from pipeline.models.layers import StatsPooling, classifier_head, conv_blocks

INPUTS: tuple[str, ...] = ("sequence", "utterance")
POOLINGS: tuple[str, ...] = ("mean", "stats")


def build_cnn(input_shape: tuple[int | None, ...], num_classes: int, *, filters: Sequence[int],
              kernel_size: int, pool_size: int, dropout: float, dense: Sequence[int],
              input: str = "sequence", pooling: str = "mean", name: str = "cnn") -> keras.Model:
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

    inputs = keras.Input(shape=tuple(input_shape), name=input)
    x = inputs if input == "sequence" else layers.Reshape((input_shape[0], 1), name="as_steps")(inputs)
    x = conv_blocks(x, filters=filters, kernel_size=kernel_size, pool_size=pool_size, dropout=dropout)
    if input == "sequence" and pooling == "stats":
        x = StatsPooling(name="stats_pool")(x)
    elif input == "sequence":
        x = layers.GlobalAveragePooling1D(name="mean_pool")(x)
    else:
        x = layers.Flatten(name="flatten")(x)
    outputs = classifier_head(x, dense=dense, dropout=dropout, num_classes=num_classes)
    return keras.Model(inputs, outputs, name=name)
