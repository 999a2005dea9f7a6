"""TensorFlow Lite export of a model bundle, and predictions from the exported file.

:func:`to_tflite` converts a Keras model to a ``.tflite`` flatbuffer with TensorFlow Lite
built-in ops only (no Flex delegate needed), for one clip at a time: the batch axis is fixed
to 1, which is what lets the converter fuse the (Bi)LSTM into TFLite's sequence-LSTM op; the
custom :class:`~pipeline.models.AttentionPooling` layer is plain tensor algebra and converts
as it is. :func:`export_bundle` writes ``model.tflite`` next to the bundle with a small
``export.json``; that file plus ``bundle.json`` and ``scaler.npz`` are all that
:class:`TFLitePredictor` reads, so inference then needs neither Keras nor ``model.keras``.

The interpreter is LiteRT's (``ai_edge_litert``); without it, TensorFlow's deprecated
``tf.lite.Interpreter``.

Examples
--------
>>> path = export_bundle("models/cnn")                                 # doctest: +SKIP
>>> TFLitePredictor("models/cnn").predict_file("clip.wav").emotion   # doctest: +SKIP
'angry'
"""
from __future__ import annotations

import functools
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from pipeline import bundle as B
from pipeline.extraction import FeatureConfig
from pipeline.infer import Predictor

TFLITE_NAME = "model.tflite"
EXPORT_JSON = "export.json"


def to_tflite(model, *, input_shape: tuple[int, ...] | None = None) -> bytes:
    """Convert ``model`` to a TensorFlow Lite flatbuffer with a batch of exactly one.

    Parameters
    ----------
    model : keras.Model
        Probabilities out, shape (batch, n_classes).
    input_shape : tuple of int, optional
        One example's shape without the batch axis, e.g. ``(301, 106)`` frames x features;
        default: the model's, which must then be fully known.

    Returns
    -------
    bytes
        The ``.tflite`` file: float32 input (1, *input_shape), output (1, n_classes).
    """
    import keras
    import tensorflow as tf

    input_shape = tuple(model.input_shape[1:]) if input_shape is None else tuple(input_shape)
    if not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise ValueError(f"input_shape {input_shape} must be fully known (no None); pass input_shape=")
    spec = tf.TensorSpec((1, *input_shape), tf.float32, name="features")
    with tempfile.TemporaryDirectory() as saved_model:  # Keras 3's path: ExportArchive -> SavedModel
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", functools.partial(model.__call__, training=False), input_signature=[spec])
        archive.write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()


def feature_shape(bundle: B.Bundle) -> tuple[int, ...]:
    """Shape of one example the bundle's model gets: (frames, features) or (features,)."""
    config = FeatureConfig.from_dict(bundle.feature_config)
    if bundle.input_kind == "sequence":
        width = len(config.sequence_names()) if bundle.columns is None else len(bundle.columns)
        return bundle.crop_frames or config.n_frames, width
    return (len(config.utterance_names()),)


def windows_spec(width: int) -> dict:
    """How a cropping model's clip is cut into model inputs (:func:`pipeline.windows.cover`), as
    data for ``export.json``: exact, so a port predicts what ``ser predict`` does."""
    return {"frames": width, "n": "the clip's real frames: 1 + (n_samples + 2 * (n_fft // 2) - n_fft) // hop_length",
            "starts": f"rint(linspace(0, max(n - {width}, 0), 1 + ceil(max(n - {width}, 0) / {max(width // 2, 1)})))",
            "each": f"frames start .. start + {width} of the standardised clip (padding included past n)",
            "combine": "the mean of the windows' probabilities"}


def export_bundle(folder: str | Path, *, out: str | Path | None = None) -> Path:
    """Write ``<folder>/model.tflite`` (or ``out``) and ``export.json`` beside it; return the path.

    ``export.json`` records the labels in output order, the input kind and shape, the
    storage dtype the features are rounded to, and which bundle files hold the preprocessing.
    Raises ``ValueError`` unless ``out`` ends in ``.tflite``.
    """
    from pipeline.models import is_keras

    folder = Path(folder)
    bundle = B.load(folder)
    if isinstance(bundle, B.FusionBundle):
        raise ValueError(f"{folder}: a fusion bundle has no single TensorFlow Lite form; export one of its members "
                         f"({folder}/members/<name>) that is a cnn or cnn_lstm")
    if not is_keras(bundle.model):
        raise ValueError(f"{folder}: a scikit-learn SVM bundle has no TensorFlow Lite form; export a cnn or cnn_lstm "
                         "bundle, or serve this one with `ser predict` / the web app")
    input_shape = feature_shape(bundle)
    out = Path(out) if out is not None else folder / TFLITE_NAME
    if out.suffix != ".tflite":
        raise ValueError(f"{out}: the export file name must end in .tflite")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(to_tflite(bundle.model, input_shape=input_shape))
    dtype = bundle.info.get("feature_dtype", "float32")
    (out.parent / EXPORT_JSON).write_text(json.dumps({
        "tflite": out.name, "bundle": os.path.relpath(folder, out.parent), "labels": bundle.labels,
        "input_kind": bundle.input_kind, "input_shape": [1, *input_shape], "input_dtype": "float32",
        "feature_dtype": dtype, "output": "probabilities",
        **({} if bundle.columns is None else {"columns": [int(c) for c in bundle.columns]}),
        "preprocessing": f"bundle.json feature_config; features rounded to {dtype}; "
                         + ("" if bundle.columns is None else "then only the frame-feature columns listed in "
                            "'columns' (bundle.json sequence_features); ")
                         + "then scaler.npz: "
                         "(x - mean) / std, padded frames set to 0"
                         + ("" if bundle.crop_frames is None else "; then the windows below, one model run each"),
        **({} if bundle.crop_frames is None else {"windows": windows_spec(bundle.crop_frames)}),
    }, indent=1) + "\n")
    return out


def interpreter(model_content: bytes, *, num_threads: int | None = None):
    """A TensorFlow Lite interpreter for ``model_content``, tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # LiteRT not installed: TensorFlow's own, deprecated in its favour
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        it = Interpreter(model_content=model_content, num_threads=num_threads)
    it.allocate_tensors()
    return it


class TFLiteModel:
    """Calls a ``.tflite`` model like a Keras one: ``model(x)`` -> probabilities (n, n_classes),
    one clip per interpreter run."""

    def __init__(self, model_content: bytes, *, num_threads: int | None = None) -> None:
        self.interpreter = interpreter(model_content, num_threads=num_threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(None if i == 0 else int(d) for i, d in enumerate(self._input["shape"]))

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            raise ValueError("a TensorFlow Lite model only runs inference")
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape[1:]:
            raise ValueError(f"expected input of shape (n, {', '.join(map(str, self.input_shape[1:]))}), got {x.shape}")
        out = []
        for example in x:
            self.interpreter.set_tensor(self._input["index"], example[None])
            self.interpreter.invoke()
            out.append(self.interpreter.get_tensor(self._output["index"])[0].copy())
        return np.stack(out) if out else np.zeros((0, self._output["shape"][-1]), dtype=np.float32)


class TFLitePredictor(Predictor):
    """:class:`~pipeline.infer.Predictor` running an exported ``.tflite`` file.

    Reads ``bundle.json`` and ``scaler.npz`` from ``folder`` and the model from ``tflite``
    (default ``<folder>/model.tflite``); ``model.keras`` is not needed.
    """

    def __init__(self, folder: str | Path, *, tflite: str | Path | None = None, **settings: float) -> None:
        """``settings``: :class:`~pipeline.infer.Predictor`'s input limits and timeline settings."""
        self.tflite = Path(tflite) if tflite is not None else Path(folder) / TFLITE_NAME
        super().__init__(folder, **settings)

    def _load_bundle(self, folder: Path) -> B.Bundle:
        if not (folder / "bundle.json").is_file():
            raise FileNotFoundError(f"{folder}: not a model bundle (no bundle.json); pass a folder under models/")
        if not self.tflite.is_file():
            raise FileNotFoundError(f"{self.tflite}: no exported model; run `ser export --model {folder}` first")
        meta = json.loads((folder / "bundle.json").read_text())
        if "fusion" in meta:
            raise FileNotFoundError(f"{folder}: a fusion bundle has no TensorFlow Lite form; run it with `ser predict`")
        scaler = np.load(folder / "scaler.npz")
        return B.Bundle(model=TFLiteModel(self.tflite.read_bytes()), labels=meta["labels"],
                        input_kind=meta["input_kind"], feature_config=meta["feature_config"],
                        speaker_norm=meta["speaker_norm"], mean=scaler["mean"], std=scaler["std"], info=meta)
