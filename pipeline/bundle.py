"""The self-contained model bundle: everything inference needs, nothing else.

A bundle folder holds ``model.keras`` (or ``model.pkl`` for the scikit-learn SVM), ``scaler.npz`` (standardisation fitted on training data
only) and ``bundle.json`` (label list in output order, the input kind, the exact feature
config, and whether features are normalised per speaker). :func:`standardise` is the one
preprocessing path shared by training, evaluation and inference.
"""
from __future__ import annotations

import functools
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from pipeline.extraction import FeatureConfig
from pipeline.windows import crop_frames, predict_covering

MODEL_FILES = {"keras": "model.keras", "sklearn": "model.pkl"}
"""The model file of a bundle: a Keras model, or the pickled scikit-learn SVM (trusted bundles only)."""


def valid_mask(x: np.ndarray, n_frames: np.ndarray) -> np.ndarray | None:
    """(n, frames) bool mask of frames holding real audio, for sequence input; None otherwise."""
    if x.ndim != 3:
        return None
    return np.arange(x.shape[1])[None, :] < np.asarray(n_frames)[:, None]


def _frames(x: np.ndarray, n_frames: np.ndarray) -> np.ndarray:
    """The rows the statistics run over: real-audio frames of sequences, or whole vectors."""
    mask = valid_mask(x, n_frames)
    return x[mask] if mask is not None else x.reshape(len(x), -1)


def _running_sum(total: np.ndarray | None, rows: np.ndarray, *, centre: np.ndarray | None = None,
                 step: int = 16384) -> np.ndarray | None:
    """``total`` plus the rows of ``rows`` (or their squared distances from ``centre``), added
    one row after another in float64: the order in which NumPy reduces a C-ordered array over
    axis 0, so any split into blocks gives the one-shot sum bit for bit."""
    for i in range(0, len(rows), step):
        block = rows[i:i + step].astype(np.float64)     # a copy, so the arithmetic below is in place
        if centre is not None:
            block -= centre
            block *= block
        total = np.add.reduce(block if total is None else np.concatenate([total[None], block]), axis=0)
    return total


def fit_stats_blocks(blocks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (float64) over the (x, n_frames) blocks that ``blocks()``
    yields; called twice (the mean, then the spread around it), so the data never has to
    be in memory at once. Equal bit for bit to NumPy's ``mean``/``std`` of all blocks joined."""
    total, count = None, 0
    for x, n in blocks():
        rows = _frames(x, n)
        total, count = _running_sum(total, rows), count + len(rows)
    if count == 0:
        raise ValueError("cannot fit standardisation on zero frames")
    mean = total / count
    spread = None
    for x, n in blocks():
        spread = _running_sum(spread, _frames(x, n), centre=mean)
    std = np.sqrt(spread / count)
    return mean, np.where(std < 1e-6, 1.0, std)


def fit_stats(x: np.ndarray, n_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (float64, (features,)) over real-audio frames / clips."""
    return fit_stats_blocks(lambda: [(x, n_frames)])


SpeakerStats = Mapping[str, tuple[np.ndarray, np.ndarray]]


def speaker_stats(x: np.ndarray, n_frames: np.ndarray, speakers: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each speaker's own (mean, std) over that speaker's clips (labels unused)."""
    speakers = np.asarray(speakers)
    return {spk: fit_stats(x[speakers == spk], np.asarray(n_frames)[speakers == spk]) for spk in np.unique(speakers)}


def speaker_normalise(x: np.ndarray, n_frames: np.ndarray, speakers: Sequence[str],
                      stats: SpeakerStats | None = None) -> np.ndarray:
    """Standardise each speaker's clips with that speaker's own statistics: ``stats`` (from all
    of the speaker's clips, when ``x`` is only a batch of them) or computed from ``x``."""
    stats = speaker_stats(x, n_frames, speakers) if stats is None else stats
    out = np.empty_like(x, dtype=np.float32)
    speakers = np.asarray(speakers)
    for spk in np.unique(speakers):
        if spk not in stats:
            raise ValueError(f"no normalisation statistics for speaker {spk!r}")
        idx = np.flatnonzero(speakers == spk)
        mean, std = stats[spk]
        out[idx] = (x[idx] - mean) / std
    return out


def standardise(x: np.ndarray, n_frames: np.ndarray, *, mean: np.ndarray, std: np.ndarray,
                speakers: Sequence[str] | None = None, speaker_stats: SpeakerStats | None = None) -> np.ndarray:
    """Model input from raw features: optional per-speaker normalisation (``speaker_stats``, or
    computed from ``x``), then the global scaler, then padded frames set to 0. Shapes are kept;
    returns float32. Row by row, so a batch gets the values the whole set would."""
    if speakers is not None:
        x = speaker_normalise(x, n_frames, speakers, stats=speaker_stats)
    out = ((x - mean) / std).astype(np.float32)
    mask = valid_mask(out, n_frames)
    if mask is not None:
        out[~mask] = 0.0
    return out


@dataclass
class Bundle:
    """A loaded bundle. ``labels[i]`` is the class of output unit i."""

    model: object
    labels: list[str]
    input_kind: str
    feature_config: dict
    speaker_norm: bool
    mean: np.ndarray
    std: np.ndarray
    info: dict

    @property
    def input_kinds(self) -> list[str]:
        """The feature arrays this bundle reads (one for a single model)."""
        return [self.input_kind]

    @property
    def feature_dtypes(self) -> dict[str, str]:
        """Storage dtype of each input kind (inference rounds features to it, as the cache did)."""
        return {self.input_kind: self.info.get("feature_dtype", "float32")}

    def predict_inputs(self, inputs: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                       speakers: Sequence[str] | None = None,
                       speaker_stats: Mapping[str, SpeakerStats] | None = None) -> np.ndarray:
        """Probabilities from ``{kind: (x, n_frames)}`` holding at least :attr:`input_kinds`
        (``speaker_stats``: ``{kind: per-speaker stats}`` when ``x`` is a batch of the clips)."""
        x, n_frames = inputs[self.input_kind]
        return self.predict_proba(x, n_frames, speakers=speakers,
                                  speaker_stats=None if speaker_stats is None else speaker_stats[self.input_kind])

    def predict_proba(self, x: np.ndarray, n_frames: np.ndarray, *, speakers: Sequence[str] | None = None,
                      speaker_stats: SpeakerStats | None = None, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (n, n_classes) for raw features of ``input_kind``; with speaker
        normalisation, each speaker's statistics come from ``speaker_stats`` or from ``x``."""
        if self.speaker_norm and speakers is None:
            raise ValueError("this model normalises features per speaker; pass the speaker of each clip")
        columns = self.columns
        if columns is not None:      # a model reading some of the frame features (models.<name>.sequence)
            x = np.asarray(x)[..., columns]
            if speaker_stats is not None:
                speaker_stats = {s: (m[columns], d[columns]) for s, (m, d) in speaker_stats.items()}
        z = standardise(x, n_frames, mean=self.mean, std=self.std, speakers=speakers if self.speaker_norm else None,
                        speaker_stats=speaker_stats)
        if not len(z):
            return np.zeros((0, len(self.labels)))
        # A direct call per batch: Model.predict costs tens of milliseconds of set-up per call.
        width = self.crop_frames
        if width is not None:   # the mean over the windows covering each clip (pipeline.windows)
            return predict_covering(lambda w: self.model(w, training=False), z, n_frames, width=width,
                                    batch_size=batch_size)
        out = [np.asarray(self.model(z[i:i + batch_size], training=False)) for i in range(0, len(z), batch_size)]
        return np.concatenate(out).astype(np.float64)

    @functools.cached_property
    def columns(self) -> np.ndarray | None:
        """Positions of the frame-feature columns the model reads (its ``models.<name>.sequence``,
        saved as ``sequence_features``) among those of :attr:`feature_config`; None: all of them."""
        if self.input_kind != "sequence" or self.info.get("sequence_features") is None:
            return None
        return FeatureConfig.from_dict(self.feature_config).columns(self.info["sequence_features"])

    @property
    def crop_frames(self) -> int | None:
        """The window of a model trained on crops (``models.<name>.crop_s``) in frames, else None."""
        if self.input_kind != "sequence":
            return None
        return crop_frames(self.info.get("model_params") or {}, self.feature_config)


@dataclass
class FusionBundle:
    """Late fusion: the weighted mean of member bundles' class probabilities.

    Members are complete bundles (each with its own input kind and scaler) trained on the
    same speakers with the same labels and clip preparation; :func:`save_fusion` copies them
    into ``<folder>/members/<name>/`` so the fusion bundle is self-contained.
    """

    members: dict[str, Bundle]
    weights: list[float]
    labels: list[str]
    info: dict
    input_kind = "fusion"

    def __post_init__(self) -> None:
        check_fusable(self.members)

    @property
    def input_kinds(self) -> list[str]:
        return sorted({m.input_kind for m in self.members.values()})

    @property
    def feature_dtypes(self) -> dict[str, str]:
        return {k: v for m in self.members.values() for k, v in m.feature_dtypes.items()}

    @property
    def speaker_norm(self) -> bool:
        return any(m.speaker_norm for m in self.members.values())

    @property
    def feature_config(self) -> dict:
        return next(iter(self.members.values())).feature_config

    def predict_inputs(self, inputs: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                       speakers: Sequence[str] | None = None,
                       speaker_stats: Mapping[str, SpeakerStats] | None = None) -> np.ndarray:
        return fuse_probabilities([m.predict_inputs(inputs, speakers=speakers, speaker_stats=speaker_stats)
                                   for m in self.members.values()], self.weights)


@dataclass(frozen=True)
class BundleMeta:
    """What ``bundle.json`` says of a bundle, read without loading its model (no TensorFlow)."""

    labels: list[str]
    feature_config: dict
    info: dict


def _bundle_json(folder: Path) -> dict:
    """``folder/bundle.json``, or the error that ``folder`` is not a bundle, naming the fix."""
    if not (folder / "bundle.json").is_file():
        raise FileNotFoundError(f"{folder}: not a model bundle (no bundle.json); run `dvc repro` to train one")
    return json.loads((folder / "bundle.json").read_text())


def read_meta(folder: Path) -> BundleMeta:
    """The labels, feature config and ``bundle.json`` of the bundle in ``folder`` (of a fusion:
    the feature config of its first member, as :attr:`FusionBundle.feature_config`)."""
    folder = Path(folder)
    meta = _bundle_json(folder)
    if "fusion" in meta:
        first = read_meta(folder / "members" / meta["fusion"]["members"][0])
        return BundleMeta(labels=meta["labels"], feature_config=first.feature_config, info=meta)
    return BundleMeta(labels=meta["labels"], feature_config=meta["feature_config"], info=meta)


def check_fusable(members: Mapping[str, "Bundle | BundleMeta"]) -> None:
    """Members must share the labels (in order) and the clip preparation (same feature config)."""
    if not members:
        raise ValueError("a fusion needs at least one member bundle")
    first_name, first = next(iter(members.items()))
    for name, m in members.items():
        if list(m.labels) != list(first.labels):
            raise ValueError(f"fusion member {name!r} has labels {m.labels}, {first_name!r} has {first.labels}; "
                             "train every member on the same split.classes")
        if m.feature_config != first.feature_config:
            raise ValueError(f"fusion member {name!r} was trained with another feature config than {first_name!r}; "
                             "retrain the members with the same features params (`dvc repro`)")


def fuse_probabilities(tables: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Weighted mean of aligned probability arrays (n, n_classes)."""
    if len(tables) != len(weights) or not tables:
        raise ValueError(f"{len(tables)} probability tables for {len(weights)} weights")
    return sum(w * np.asarray(t, dtype=np.float64) for t, w in zip(tables, weights, strict=True)) / float(sum(weights))


def save_fusion(folder: Path, *, members: Mapping[str, Path], weights: Sequence[float]) -> None:
    """Write a fusion bundle: copies of the member bundle folders and ``bundle.json``. The members
    are checked from their ``bundle.json`` alone (:func:`read_meta`): the fuse stage never
    loads a model, so it never imports TensorFlow."""
    import shutil

    folder = Path(folder)
    loaded = {name: read_meta(path) for name, path in members.items()}
    check_fusable(loaded)
    if folder.exists():
        shutil.rmtree(folder)
    for name, path in members.items():
        shutil.copytree(path, folder / "members" / name)
    first = next(iter(loaded.values()))
    speakers = sorted({s for m in loaded.values() for s in m.info.get("train_speakers", [])})
    (folder / "bundle.json").write_text(json.dumps({
        "labels": list(first.labels), "model": "fusion", "fusion": {"members": list(members), "weights": list(weights)},
        "train_speakers": speakers}, indent=1))


def _renumber_shared_ids(node, ids: dict):
    if isinstance(node, dict):
        return {k: (ids.setdefault(v, len(ids)) if k == "shared_object_id" else _renumber_shared_ids(v, ids))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_renumber_shared_ids(v, ids) for v in node]
    return node


def _normalise_keras_zip(path: Path) -> None:
    """Make a ``.keras`` file a function of the model alone: Keras stamps the save date into
    ``metadata.json`` and the zip entries, and memory addresses into ``config.json``
    (``shared_object_id``), so equal models would differ byte for byte (and DVC would see a
    changed output on every fresh ``dvc repro``)."""
    with zipfile.ZipFile(path) as z:
        entries = [(name, z.read(name)) for name in sorted(z.namelist())]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in entries:
            if name == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta, sort_keys=True).encode()
            elif name == "config.json":  # shared_object_id is a Python id(): renumber in order
                data = json.dumps(_renumber_shared_ids(json.loads(data), {})).encode()
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)


def save(folder: Path, *, model, labels: Sequence[str], input_kind: str, feature_config: dict,
         speaker_norm: bool, mean: np.ndarray, std: np.ndarray, info: dict) -> None:
    from pipeline.models import is_keras

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (MODEL_FILES.values()):
        (folder / stale).unlink(missing_ok=True)
    if not is_keras(model):  # the scikit-learn SVM (pipeline.models.svm)
        with (folder / MODEL_FILES["sklearn"]).open("wb") as f:
            pickle.dump(model, f, protocol=4)
    else:
        model.save(folder / MODEL_FILES["keras"])
        _normalise_keras_zip(folder / MODEL_FILES["keras"])
    np.savez(folder / "scaler.npz", mean=mean, std=std)
    (folder / "bundle.json").write_text(json.dumps({
        "labels": list(labels), "input_kind": input_kind, "feature_config": feature_config,
        "speaker_norm": bool(speaker_norm), **info}, indent=1))


def load(folder: Path) -> Bundle | FusionBundle:
    import pipeline.models  # noqa: F401  (loads openSMILE before TensorFlow)

    folder = Path(folder)
    meta = _bundle_json(folder)
    if "fusion" in meta:
        names, weights = meta["fusion"]["members"], meta["fusion"]["weights"]
        return FusionBundle(members={n: load(folder / "members" / n) for n in names}, weights=list(weights),
                            labels=meta["labels"], info=meta)
    scaler = np.load(folder / "scaler.npz")
    if (folder / MODEL_FILES["sklearn"]).is_file():
        with (folder / MODEL_FILES["sklearn"]).open("rb") as f:  # a pickle: load only bundles you trust
            model = pickle.load(f)
    else:
        import keras

        import pipeline.models.layers  # noqa: F401  (registers the custom layers)
        model = keras.models.load_model(folder / MODEL_FILES["keras"])
    return Bundle(model=model, labels=meta["labels"],
                  input_kind=meta["input_kind"], feature_config=meta["feature_config"],
                  speaker_norm=meta["speaker_norm"], mean=scaler["mean"], std=scaler["std"], info=meta)
