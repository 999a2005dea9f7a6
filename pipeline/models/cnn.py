"""A CNN over frame features (sequence; 1-D over time or 2-D over time and feature columns) or over
the utterance feature vector."""
from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import layers

from pipeline.models.layers import FrameMask, MaskedMeanPooling, StatsPooling, classifier_head, conv_blocks
from pipeline.params import ParamsError
from pipeline.schema import CNN_CONVS as CONVS, CNN_INPUTS as INPUTS, CNN_POOLINGS as POOLINGS


def build_cnn(input_shape: tuple[int | None, ...], num_classes: int, *, filters: Sequence[int],
              kernel_size: int, pool_size: int, dropout: float, dense: Sequence[int],
              input: str = "sequence", pooling: str = "mean", mask_padding: bool = False,
              conv: str = "1d", stride: int = 1, name: str = "cnn") -> keras.Model:
    """Build a CNN classifier: 1-D convolutions over time, or 2-D over time and feature columns.

    Parameters
    ----------
    input_shape : ``(frames, features)`` for ``input="sequence"`` (``frames`` may be None);
        ``(features,)`` for ``input="utterance"``.
    num_classes : width of the softmax output.
    filters : channels of each conv block (Conv → BatchNorm → ReLU → MaxPool → Dropout).
    kernel_size : kernel length, in frames (sequence) or feature bins (utterance); with
        ``conv="2d"`` the kernel is ``kernel_size`` x ``kernel_size`` (frames x columns).
    pool_size : max-pooling factor per block (1: no pooling), on both axes for ``conv="2d"``.
    dropout : dropout rate after each conv block and each dense layer.
    dense : widths of the ReLU dense layers before the softmax; may be empty.
    input : "sequence": convolve over time, then global average pooling over time.
        "utterance": the vector is reshaped to ``(features, 1)`` and convolved along the
        feature axis, as the public write-ups do, then flattened (not averaged: a position on
        that axis is a particular feature, e.g. MFCC 3, so position matters).
    pooling : over time, for sequence input: "mean" (global average) or "stats" (mean and
        standard deviation of every channel, concatenated: the x-vector statistics pooling).
    conv : "1d": each frame's feature vector is the channels of a 1-D convolution over time.
        "2d" (sequence input only): the (frames, features) map is an image of one channel,
        convolved over time and feature columns (a 2-D CNN over log-mel patches when
        ``features.sequence`` is ``[logmel]``); each time step's (columns x channels) map is
        then flattened, so a feature column keeps its position, and pooled over time.
    stride : stride of the first convolution (on both axes for ``conv="2d"``); 2 halves the
        frames the later blocks see, which is what makes a 2-D CNN affordable on a CPU.
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
    if conv not in CONVS:
        raise ValueError(f"conv={conv!r} is not valid; choose one of {list(CONVS)}")
    if conv == "2d" and input != "sequence":
        raise ParamsError(f"params.yaml: models.{name}: conv='2d' convolves over frames and feature columns, which "
                          "needs input='sequence'; set conv: 1d or input: sequence")
    if mask_padding and input != "sequence":
        raise ParamsError(f"params.yaml: models.{name}: mask_padding=true needs input='sequence' (an utterance "
                          "vector has no padding); set mask_padding: false")

    inputs = keras.Input(shape=tuple(input_shape), name=input)
    x = inputs if input == "sequence" else layers.Reshape((input_shape[0], 1), name="as_steps")(inputs)
    if conv == "2d":
        x = layers.Reshape((-1, input_shape[1], 1), name="as_image")(x)
    args = dict(filters=filters, kernel_size=kernel_size, pool_size=pool_size, dropout=dropout, stride=stride,
                dims=2 if conv == "2d" else 1)
    if mask_padding:
        x, mask = conv_blocks(x, **args, mask=FrameMask(name="frame_mask")(inputs))
        if conv == "2d":
            x = _steps(x)
        x = (StatsPooling(name="stats_pool") if pooling == "stats" else MaskedMeanPooling(name="mean_pool"))([x, mask])
    else:
        x = conv_blocks(x, **args)
        if conv == "2d":
            x = _steps(x)
        if input == "sequence" and pooling == "stats":
            x = StatsPooling(name="stats_pool")(x)
        elif input == "sequence":
            x = layers.GlobalAveragePooling1D(name="mean_pool")(x)
        else:
            x = layers.Flatten(name="flatten")(x)
    outputs = classifier_head(x, dense=dense, dropout=dropout, num_classes=num_classes)
    return keras.Model(inputs, outputs, name=name)


def _steps(x: Any) -> Any:
    """(batch, steps, columns, channels) → (batch, steps, columns * channels)."""
    return layers.Reshape((-1, x.shape[2] * x.shape[3]), name="as_steps")(x)
