"""Model builders, picked by name from :data:`BUILDERS`.

``params`` below is one model's own section of params.yaml, ``models.<name>``. The train
stage calls :func:`check_params` at the top of ``main`` (so a typo fails before any data is
loaded), :func:`input_kind` to pick the feature array, then ``keras.utils.set_random_seed``
and :func:`build`. Keras is imported on first use of a Keras model (a builder, or a name such
as :class:`AttentionPooling`), never for the SVMs alone, so a stage that trains or scores an
SVM starts without TensorFlow (about 4 s less a process). :mod:`pipeline.models.layers`
registers the custom layers on import (:func:`pipeline.bundle.load` imports it), so a saved
``.keras`` model then reloads with plain ``keras.models.load_model(path)``.

>>> model = build("cnn_lstm", input_shape=(301, 106), num_classes=7,
...               params=pipeline.params.load()["models"]["cnn_lstm"])  # doctest: +SKIP
"""
from __future__ import annotations

import importlib
from numbers import Integral
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pipeline.egemaps import preload

preload()  # openSMILE before TensorFlow: the other order aborts the process (see pipeline.egemaps.preload)

from pipeline.models.svm import SVMClassifier, build_svm  # noqa: E402
from pipeline.params import ParamsError, check  # noqa: E402
from pipeline.schema import MODEL_SECTIONS, spec_on  # noqa: E402

if TYPE_CHECKING:
    import keras

_LAZY = {"build_cnn": "pipeline.models.cnn", "build_cnn_lstm": "pipeline.models.cnn_lstm",
         **{n: "pipeline.models.layers" for n in ("AttentionPooling", "FrameMask", "MaskedMeanPooling", "StatsPooling")}}


def __getattr__(name: str) -> Any:
    """The Keras names of ``_LAZY``, imported (with Keras) on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_cnn(*args, **kwargs):
    """:func:`pipeline.models.cnn.build_cnn` (imports Keras)."""
    return __getattr__("build_cnn")(*args, **kwargs)


def build_cnn_lstm(*args, **kwargs):
    """:func:`pipeline.models.cnn_lstm.build_cnn_lstm` (imports Keras)."""
    return __getattr__("build_cnn_lstm")(*args, **kwargs)

__all__ = ["BUILDERS", "FUSION", "AttentionPooling", "FrameMask", "MaskedMeanPooling", "StatsPooling", "check_fusion", "SVMClassifier", "TRAINING_KEYS", "build", "build_cnn", "build_cnn_lstm", "build_svm",
           "check_params", "input_kind", "is_keras"]

BUILDERS: dict[str, Callable[..., Any]] = {"cnn": build_cnn, "cnn_lstm": build_cnn_lstm, "svm": build_svm,
                                           "svm_compare": build_svm, "svm_ge2e": build_svm}
"""Keras models (trained with :func:`pipeline.train.fit`'s epochs) and the scikit-learn SVMs
(``svm``: eGeMAPS, the classic baseline; ``svm_compare``: the same recipe over ComParE_2016;
``svm_ge2e``: over a pretrained voice encoder's features, :mod:`pipeline.voice`)."""

TRAINING_KEYS = ("specaugment", "train_on_val", "copies", "adversary", "ensemble", "crop_s", "sequence")
"""Keys of a model's section that set how it trains (:func:`pipeline.train.fit`,
:func:`pipeline.train.train_on`: ``sequence``, the frame features it reads), not the network."""


def is_keras(model: Any) -> bool:
    """Whether a model name or a built model is Keras's (else the scikit-learn :class:`SVMClassifier`)."""
    if isinstance(model, str):
        return BUILDERS.get(model) is not build_svm
    return not isinstance(model, SVMClassifier)


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)   # numpy ints too


FUSION = "fusion"
"""The late fusion of trained models (:class:`pipeline.bundle.FusionBundle`): ``models.fusion``
names its ``members`` (models of :data:`BUILDERS`) and their ``weights``."""


def check_fusion(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``models.fusion`` (:class:`pipeline.schema.Fusion`): ``members`` (>= 2 distinct
    names of :data:`BUILDERS`) and ``weights`` (one number > 0 per member)."""
    return check(MODEL_SECTIONS[FUSION], params, key=f"models.{FUSION}")


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``models.<name>`` against its schema (:data:`pipeline.schema.MODEL_SECTIONS`)
    and return it as keyword arguments for the builder.

    Raises :class:`ParamsError` for an unknown model name (listing the valid ones), a
    missing or unknown key, or a value that breaks its rule (naming the key and the rule).
    """
    if name not in BUILDERS:
        raise ParamsError(f"params.yaml: unknown model {name!r}; choose one of {sorted(BUILDERS)}")
    return check(MODEL_SECTIONS[name], params, key=f"models.{name}")


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
    if kind != "sequence" and spec_on(kwargs.get("specaugment")):
        raise ParamsError(f"params.yaml: models.{name}: specaugment masks frames and feature columns, which needs "
                          f"input='sequence' (got {kind!r}); set models.{name}.specaugment: null")
    for key in TRAINING_KEYS:
        kwargs.pop(key, None)
    return BUILDERS[name](shape, num_classes, name=name, **kwargs)
