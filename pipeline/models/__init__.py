"""Model builders, picked by name from :data:`BUILDERS`.

``params`` below is one model's own section of params.yaml, ``models.<name>``. The train
stage calls :func:`check_params` at the top of ``main`` (so a typo fails before any data is
loaded), :func:`input_kind` to pick the feature array, then ``keras.utils.set_random_seed``
and :func:`build`. Importing this package registers the custom layers of :mod:`pipeline.models.layers`, so a saved
``.keras`` model reloads with plain ``keras.models.load_model(path)``.

>>> model = build("cnn_lstm", input_shape=(301, 106), num_classes=7,
...               params=pipeline.params.load()["models"]["cnn_lstm"])  # doctest: +SKIP
"""
from __future__ import annotations

from functools import partial
from numbers import Integral
from typing import Any, Callable, Mapping

from pipeline.egemaps import preload

preload()  # openSMILE before TensorFlow: the other order aborts the process (see pipeline.egemaps.preload)

import keras  # noqa: E402

from pipeline.models.cnn import INPUTS, POOLINGS as CNN_POOLINGS, build_cnn  # noqa: E402
from pipeline.models.cnn_lstm import POOLINGS, build_cnn_lstm
from pipeline.models.layers import AttentionPooling, FrameMask, MaskedMeanPooling, StatsPooling
from pipeline.models.svm import INPUTS as SVM_INPUTS, SVMClassifier, build_svm
from pipeline.params import ParamsError, choice

__all__ = ["BUILDERS", "FUSION", "AttentionPooling", "FrameMask", "MaskedMeanPooling", "StatsPooling", "check_fusion", "SVMClassifier", "build", "build_cnn", "build_cnn_lstm", "build_svm",
           "check_params", "input_kind", "is_keras"]

BUILDERS: dict[str, Callable[..., Any]] = {"cnn": build_cnn, "cnn_lstm": build_cnn_lstm, "svm": build_svm}
"""Keras models (trained with :func:`pipeline.train.fit`'s epochs) and the scikit-learn SVM."""


def is_keras(model: Any) -> bool:
    """Whether a model name or a built model is Keras's (else the scikit-learn :class:`SVMClassifier`)."""
    if isinstance(model, str):
        return BUILDERS.get(model) is not build_svm
    return not isinstance(model, SVMClassifier)


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)   # numpy ints too


def _widths(value: Any, *, key: str, allow_empty: bool) -> list[int]:
    if not (isinstance(value, (list, tuple)) and all(_is_int(v) and v > 0 for v in value)
            and (value or allow_empty)):
        what = "a list" if allow_empty else "a non-empty list"
        raise ParamsError(f"params.yaml: {key}={value!r} must be {what} of integers > 0, e.g. [64, 128]")
    return list(value)


def _count(value: Any, *, key: str) -> int:
    if not _is_int(value) or value < 1:
        raise ParamsError(f"params.yaml: {key}={value!r} must be an integer >= 1")
    return value


def _rate(value: Any, *, key: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise ParamsError(f"params.yaml: {key}={value!r} must be a dropout rate in [0, 1); 0 turns it off")
    return float(value)


def _positive(value: Any, *, key: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ParamsError(f"params.yaml: {key}={value!r} must be a number > 0")
    return float(value)


def _gamma(value: Any, *, key: str) -> str | float:
    if value in ("scale", "auto"):
        return value
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ParamsError(f"params.yaml: {key}={value!r} must be 'scale', 'auto' or a number > 0")
    return float(value)


def _flag(value: Any, *, key: str) -> bool:
    if not isinstance(value, bool):
        raise ParamsError(f"params.yaml: {key}={value!r} must be true or false")
    return value


_SCHEMAS: dict[str, dict[str, Callable[..., Any]]] = {
    "cnn": {
        "input": partial(choice, valid=INPUTS),
        "pooling": partial(choice, valid=CNN_POOLINGS),
        "filters": partial(_widths, allow_empty=False),
        "kernel_size": _count,
        "pool_size": _count,
        "dropout": _rate,
        "dense": partial(_widths, allow_empty=True),
        "mask_padding": _flag,
    },
    "cnn_lstm": {
        "filters": partial(_widths, allow_empty=True),
        "kernel_size": _count,
        "pool_size": _count,
        "conv_dropout": _rate,
        "lstm_units": _count,
        "lstm_layers": _count,
        "bidirectional": _flag,
        "pooling": partial(choice, valid=POOLINGS),
        "dense": partial(_widths, allow_empty=True),
        "dropout": _rate,
        "mask_padding": _flag,
    },
    "svm": {
        "input": partial(choice, valid=SVM_INPUTS),
        "C": _positive,
        "gamma": _gamma,
    },
}


FUSION = "fusion"
"""The late fusion of trained models (:class:`pipeline.bundle.FusionBundle`): ``models.fusion``
names its ``members`` (models of :data:`BUILDERS`) and their ``weights``."""


def check_fusion(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``models.fusion``: ``members`` (>= 2 distinct names of :data:`BUILDERS`) and
    ``weights`` (one number > 0 per member)."""
    if not isinstance(params, Mapping) or sorted(params) != ["members", "weights"]:
        raise ParamsError(f"params.yaml: models.fusion={params!r} must be a mapping with exactly members and weights")
    members, weights = params["members"], params["weights"]
    if (not isinstance(members, list) or len(members) < 2 or len(set(members)) != len(members)
            or any(m not in BUILDERS for m in members)):
        raise ParamsError(f"params.yaml: models.fusion.members={members!r} must list 2 or more distinct models "
                          f"of {sorted(BUILDERS)}")
    if (not isinstance(weights, list) or len(weights) != len(members)
            or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0 for w in weights)):
        raise ParamsError(f"params.yaml: models.fusion.weights={weights!r} must hold one number > 0 per member "
                          f"({len(members)})")
    return {"members": list(members), "weights": [float(w) for w in weights]}


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``models.<name>`` and return it as keyword arguments for the builder.

    Raises :class:`ParamsError` for an unknown model name (listing the valid ones), a
    missing or unknown key, or a value that breaks its rule (naming the key and the fix).
    """
    if name not in BUILDERS:
        raise ParamsError(f"params.yaml: unknown model {name!r}; choose one of {sorted(BUILDERS)}")
    schema = _SCHEMAS[name]
    if not isinstance(params, Mapping):
        raise ParamsError(f"params.yaml: models.{name} must be a mapping of {sorted(schema)}")
    missing = sorted(set(schema) - set(params))
    if missing:
        raise ParamsError(f"params.yaml: models.{name} is missing {missing}; add them (see the models section)")
    unknown = sorted(set(params) - set(schema))
    if unknown:
        raise ParamsError(f"params.yaml: models.{name} has unknown key(s) {unknown}; valid keys are {sorted(schema)}")
    return {key: check(params[key], key=f"models.{name}.{key}") for key, check in schema.items()}


def input_kind(name: str, params: Mapping[str, Any]) -> str:
    """Return which feature array model ``name`` reads: "sequence" (frames x features),
    "utterance" (one vector per clip) or "functionals" (eGeMAPS, one vector per clip)."""
    return check_params(name, params).get("input", "sequence")


def build(name: str, *, input_shape: tuple[int | None, ...], num_classes: int,
          params: Mapping[str, Any]) -> keras.Model | SVMClassifier:
    """Validate ``params`` (``models.<name>``) and the shapes, then build model ``name``.

    Parameters
    ----------
    name : a key of :data:`BUILDERS`.
    input_shape : one example's shape without the batch axis: ``(frames, features)`` for a
        "sequence" model, ``(features,)`` for an "utterance" one (see :func:`input_kind`).
    num_classes : number of classes (>= 2), the width of the softmax output.
    params : the model's section of params.yaml.

    Returns
    -------
    keras.Model or SVMClassifier
        Uncompiled; (batch, *input_shape) → probabilities (batch, num_classes). Weights are
        drawn from Keras's global seed: call ``keras.utils.set_random_seed`` first. ``svm``
        gives an unfitted :class:`SVMClassifier` (fit it with its ``fit``, seeded there).
    """
    kwargs = check_params(name, params)
    if not _is_int(num_classes) or num_classes < 2:
        raise ParamsError(f"num_classes={num_classes!r} must be an integer >= 2; select at least two split.classes")
    kind = input_kind(name, params)
    shape = tuple(None if d is None else int(d) if _is_int(d) else d for d in input_shape)
    rank = 2 if kind == "sequence" else 1
    sizes_ok = all((_is_int(d) and d > 0) or (d is None and i < len(shape) - 1)  # frames may be None
                   for i, d in enumerate(shape))
    if len(shape) != rank or not sizes_ok:
        expected = "(frames, features)" if rank == 2 else "(features,)"
        raise ParamsError(f"models.{name}: input_shape {shape} does not fit a {kind!r} model, which expects "
                          f"{expected} of positive sizes; feed the {kind} feature array (see input_kind)")
    return BUILDERS[name](shape, num_classes, name=name, **kwargs)
