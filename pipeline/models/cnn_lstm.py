"""A Conv1D front end, (Bi)LSTM layers and pooling over time."""
from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from pipeline.models.layers import (AttentionPooling, FrameMask, MaskedMeanPooling, classifier_head, conv_blocks,
                                   l2_penalty)
from pipeline.params import ParamsError
from pipeline.schema import CNN_LSTM_POOLINGS as POOLINGS


def build_cnn_lstm(input_shape: tuple[int | None, int], num_classes: int, *, filters: Sequence[int],
                   kernel_size: int, pool_size: int, conv_dropout: float, lstm_units: int,
                   lstm_layers: int, bidirectional: bool, pooling: str, dense: Sequence[int],
                   dropout: float, mask_padding: bool = False, recurrent_dropout: float = 0.0,
                   l2: float = 0.0, name: str = "cnn_lstm") -> keras.Model:
    """Build a CNN-(Bi)LSTM classifier over frame features.

    Parameters
    ----------
    input_shape : ``(frames, features)``; ``frames`` may be None.
    num_classes : width of the softmax output.
    filters : channels of each Conv1D block (as in :func:`build_cnn`); empty feeds the
        frames straight to the LSTM.
    kernel_size, pool_size : Conv1D kernel length and max-pooling factor, in frames.
    conv_dropout : dropout rate after each conv block.
    lstm_units : units per LSTM direction; also the width of the attention scorer.
    lstm_layers : stacked LSTM layers (>= 1), each ``return_sequences=True``.
    bidirectional : wrap each LSTM in ``Bidirectional`` (output width ``2 * lstm_units``).
    pooling : over time: "attention" (:class:`AttentionPooling`), "mean" (global average),
        or "last" (final state: the last LSTM returns its state only, which for a
        bidirectional LSTM joins the forward state at the last frame with the backward
        state at the first frame).
    dense : widths of the ReLU dense layers before the softmax; may be empty.
    dropout : dropout rate after each dense layer.
    mask_padding : "attention" and "mean" pooling weigh only the steps that hold audio
        (:class:`~pipeline.models.layers.FrameMask`), not the zero padding after a clip
        shorter than ``features.seconds``. The LSTM still reads every step, so with
        ``bidirectional`` the backward states (read from the end) have seen the padding.
    recurrent_dropout : dropout rate on each LSTM's recurrent state (Keras's
        ``recurrent_dropout``, one mask per sequence); 0: off. Training only.
    l2 : L2 penalty factor on every kernel (conv, LSTM input and recurrent, attention
        scorer excepted, dense and softmax), added to the training loss; 0: off.

    Returns
    -------
    keras.Model
        Input (batch, frames, features) → softmax probabilities (batch, num_classes).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not valid; choose one of {list(POOLINGS)}")
    if len(input_shape) != 2:
        raise ValueError(f"cnn_lstm expects input_shape (frames, features), got {tuple(input_shape)}")
    if lstm_layers < 1:
        raise ValueError(f"lstm_layers={lstm_layers!r} must be >= 1")
    if not 0 <= recurrent_dropout < 1 or l2 < 0:
        raise ValueError(f"recurrent_dropout={recurrent_dropout!r} must be in [0, 1) and l2={l2!r} >= 0")
    if mask_padding and pooling == "last":
        raise ParamsError(f"params.yaml: models.{name}: mask_padding=true needs pooling 'attention' or 'mean' (the "
                          "last state pools nothing); change one of them")

    inputs = keras.Input(shape=tuple(input_shape), name="sequence")
    mask = FrameMask(name="frame_mask")(inputs) if mask_padding else None
    x = conv_blocks(inputs, filters=filters, kernel_size=kernel_size, pool_size=pool_size,
                    dropout=conv_dropout, mask=mask, l2=l2)
    if mask_padding:
        x, mask = x
    for i in range(1, lstm_layers + 1):
        sequences = i < lstm_layers or pooling != "last"
        lstm = layers.LSTM(lstm_units, return_sequences=sequences, recurrent_dropout=recurrent_dropout,
                           kernel_regularizer=l2_penalty(l2), recurrent_regularizer=l2_penalty(l2), name=f"lstm{i}")
        x = layers.Bidirectional(lstm, name=f"bilstm{i}")(x) if bidirectional else lstm(x)
    if pooling == "attention":
        x = AttentionPooling(units=lstm_units, name="attention_pool")([x, mask] if mask_padding else x)
    elif pooling == "mean":
        x = MaskedMeanPooling(name="mean_pool")([x, mask]) if mask_padding else layers.GlobalAveragePooling1D(name="mean_pool")(x)
    outputs = classifier_head(x, dense=dense, dropout=dropout, num_classes=num_classes, l2=l2)
    return keras.Model(inputs, outputs, name=name)
