"""The typed schema of ``params.yaml``: one pydantic model per section.

:func:`pipeline.params.section` validates a section against its model here and returns it
as plain data; a stage calls it once per section it reads, at the top of ``main``. Every
value is required (the defaults live in ``params.yaml`` only), unknown keys are errors, and
types are strict (``true`` is not a number, ``"3"`` is not an integer, an integer is a
number). Rules that need the data (a speaker ``split.assign`` must place, a corpus the
split must hold) stay with the code that has the data.

The choices offered for a setting live here too, and the modules that act on them import
them from here (this module imports no stage, no TensorFlow and no librosa).
"""
from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Mapping, Optional, Union, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, ValidationInfo, field_validator, model_validator

from pipeline.vocab import EMOTIONS

CORPORA = ("ravdess", "tess", "savee", "cremad", "emodb")
PARTITIONS = ("train", "val", "test")
NOISE_COLOURS = ("white", "pink", "brown")
CROPS = ("centre", "start")
LOUDNESS_MODES = ("none", "peak", "rms")
SEQUENCE_FEATURES = ("logmel", "mfcc", "zcr", "rms", "pitch", "ge2e")
DTYPES = ("float16", "float32")
CLASS_WEIGHTS = ("balanced", "per_corpus", "none")
LR_SCHEDULES = ("plateau", "cosine")
DISTRIBUTE = ("auto", "off", "mirrored")
PROTOCOLS = ("holdout", "speaker_kfold", "cross_corpus")
CNN_INPUTS = ("sequence", "utterance")
CNN_POOLINGS = ("mean", "stats")
CNN_CONVS = ("1d", "2d")
CNN_LSTM_POOLINGS = ("attention", "last", "mean")
SVM_INPUTS = ("functionals", "compare", "ge2e", "utterance")
# What each SVM model may read: dvc.yaml's stages of svm depend on eGeMAPS, svm_compare's on ComParE,
# svm_ge2e's on the GE2E voice encoder's features (pipeline/voice.py).
STAGE_SVM_INPUTS = {"svm": ("functionals", "utterance"), "svm_compare": ("compare", "utterance"),
                    "svm_ge2e": ("ge2e", "utterance")}
MODELS = ("cnn", "cnn_lstm", "svm", "svm_compare", "svm_ge2e")
# Every input each trainable model may read (its `input` key; cnn_lstm has none: sequence).
MODEL_INPUTS = {"cnn": CNN_INPUTS, "cnn_lstm": ("sequence",), **STAGE_SVM_INPUTS}

def folder_key(corpus: str) -> str:
    """How a corpus's folder is matched under ``data.dir``: case, '-' and '_' ignored
    (``CREMA-D`` and ``emo_db`` are found for ``cremad`` and ``emodb``)."""
    return corpus.replace("-", "").replace("_", "").lower()


PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
Rate = Annotated[float, Field(ge=0, lt=1)]            # a dropout rate; 0 turns it off
Share = Annotated[float, Field(gt=0, lt=1)]
Widths = list[PositiveInt]


def _distinct(value: list) -> list:
    if len(set(value)) != len(value):
        raise ValueError("lists a feature twice")
    return value


FrameFeatures = Annotated[list[Literal[SEQUENCE_FEATURES]], Field(min_length=1), AfterValidator(_distinct)]
"""A model's frame features (``models.<name>.sequence``): features.sequence entries, each once."""


class Section(BaseModel):
    """A mapping of exactly its fields: a missing or unknown key is an error naming them all."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    optional: ClassVar[tuple[str, ...]] = ()   # keys that may be left out (they have a default of None)

    @model_validator(mode="before")
    @classmethod
    def _exact_keys(cls, data: Any) -> Any:
        fields = list(cls.model_fields)
        if not isinstance(data, Mapping):
            raise ValueError(f"must be a mapping of {fields}")
        missing = [k for k in fields if k not in data and k not in cls.optional]
        unknown = sorted(set(map(str, data)) - set(fields))
        if missing and unknown:   # most often a misspelt key: name both
            raise ValueError(f"is missing {missing} and has unknown key(s) {unknown}; valid keys are {fields}")
        if missing:
            raise ValueError(f"is missing {missing}; add them (see params.yaml)")
        if unknown:
            raise ValueError(f"has unknown key(s) {unknown}; valid keys are {fields}")
        return data


class Base(Section):
    seed: NonNegativeInt
    sample_rate: PositiveInt


class Data(Section):
    dir: str
    interim: str


class Demo(Section):
    out: str
    duration_s: Annotated[list[float], Field(min_length=2, max_length=2)]
    speakers: dict[str, int]
    clips_per_emotion: dict[str, int]
    sample_rates: dict[str, int]

    @field_validator("duration_s")
    @classmethod
    def _ordered(cls, value: list[float]) -> list[float]:
        if not 0.8 <= value[0] <= value[1]:
            raise ValueError("must be [min, max] seconds with 0.8 <= min <= max")
        return value


class Ingest(Section):
    min_duration_s: NonNegativeFloat
    max_duration_s: PositiveFloat
    silence_dbfs: float
    workers: PositiveInt
    # Per-corpus loader options (checked by the corpus's loader, which knows them); optional.
    ravdess: Optional[dict[str, Any]] = None
    tess: Optional[dict[str, Any]] = None
    savee: Optional[dict[str, Any]] = None
    cremad: Optional[dict[str, Any]] = None
    emodb: Optional[dict[str, Any]] = None
    optional: ClassVar[tuple[str, ...]] = CORPORA


class CustomCorpus(Section):
    """One corpus of your own (:mod:`pipeline.corpora.custom`): its label table and label map."""
    table: str
    labels: dict[str, Literal[EMOTIONS]]


class Custom(RootModel[dict[str, CustomCorpus]]):
    """``custom``: your own corpora by name (list each in ``corpora`` too); ``{}`` for none."""
    model_config = ConfigDict(strict=True, frozen=True)

    @field_validator("root")
    @classmethod
    def _names(cls, value: dict[str, CustomCorpus]) -> dict[str, CustomCorpus]:
        seen = {folder_key(c): c for c in CORPORA}
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or folder_key(name) in seen:
                raise ValueError(f"names corpus {name!r}: a custom corpus needs a name of lower-case letters, digits "
                                 f"and _ whose folder is no other corpus's ({', '.join(seen.values())}; folder names "
                                 "are matched ignoring case, '-' and '_')")
            seen[folder_key(name)] = name
        return value


class Proportions(Section):
    train: PositiveFloat
    val: NonNegativeFloat
    test: NonNegativeFloat


class Split(Section):
    classes: list[str]
    merge: dict[str, str]
    proportions: Proportions
    assign: dict[str, dict[Literal[PARTITIONS], list[Any]]]

    @field_validator("assign")
    @classmethod
    def _names(cls, value: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, list[Any]]]:
        for corpus, parts in value.items():
            for part, names in parts.items():
                if bad := [n for n in names if isinstance(n, bool) or not isinstance(n, (str, int))]:
                    raise ValueError(f"lists {bad[0]!r} in {corpus}.{part}; a speaker is a name or a number")
        return value


class _Range(Section):
    """A section with a ``min_<x>`` <= ``max_<x>`` pair."""
    bounds: ClassVar[tuple[str, str]] = ("", "")

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        lo, hi = self.bounds
        if getattr(self, lo) > getattr(self, hi):
            raise ValueError(f"has {lo}={getattr(self, lo)!r} above {hi}={getattr(self, hi)!r}; swap them")
        return self


class Noise(_Range):
    bounds: ClassVar[tuple[str, str]] = ("min_snr_db", "max_snr_db")
    p: Probability
    min_snr_db: float
    max_snr_db: float
    colour: Literal[NOISE_COLOURS]


class TimeStretch(_Range):
    bounds: ClassVar[tuple[str, str]] = ("min_rate", "max_rate")
    p: Probability
    min_rate: PositiveFloat
    max_rate: PositiveFloat


class PitchShift(_Range):
    bounds: ClassVar[tuple[str, str]] = ("min_semitones", "max_semitones")
    p: Probability
    min_semitones: float
    max_semitones: float


class TimeShift(Section):
    p: Probability
    max_fraction: Rate


class Augment(Section):
    out: str
    copies: NonNegativeInt
    noise: Noise
    time_stretch: TimeStretch
    pitch_shift: PitchShift
    time_shift: TimeShift
    workers: PositiveInt



class Utterance(Section):
    n_mfcc: PositiveInt
    n_chroma: PositiveInt
    n_mels: PositiveInt
    std: bool


class Features(Section):
    out: str
    seconds: PositiveFloat
    crop: Literal[CROPS]
    trim_db: Optional[PositiveFloat]
    loudness: Literal[LOUDNESS_MODES]
    target_dbfs: float
    n_fft: PositiveInt
    win_length: PositiveInt
    hop_length: PositiveInt
    sequence: Annotated[list[Literal[SEQUENCE_FEATURES]], Field(min_length=1)]
    n_mels: PositiveInt
    n_mfcc: PositiveInt
    mfcc_deltas: bool
    utterance: Utterance
    dtype: Literal[DTYPES]
    chunk_size: PositiveInt
    workers: PositiveInt


class SpecAugment(Section):
    time_masks: NonNegativeInt
    time_width: NonNegativeInt
    feature_masks: NonNegativeInt
    feature_width: NonNegativeInt


class Adversary(Section):
    weight: PositiveFloat     # the gradient reversal's factor on the speaker loss's gradient into the encoder
    dense: Widths             # ReLU dense layers of the speaker head, before its softmax


def spec_on(spec: Mapping[str, int] | None) -> bool:
    """Whether a model's ``specaugment`` masks anything: a count and a width above 0, in time or features."""
    return bool(spec) and (bool(spec["time_masks"] and spec["time_width"]) or
                           bool(spec["feature_masks"] and spec["feature_width"]))


class Cnn(Section):
    input: Literal[CNN_INPUTS]
    pooling: Literal[CNN_POOLINGS]
    filters: Annotated[Widths, Field(min_length=1)]
    kernel_size: PositiveInt
    pool_size: PositiveInt
    dropout: Rate
    dense: Widths
    mask_padding: bool
    conv: Literal[CNN_CONVS]
    stride: PositiveInt
    specaugment: Optional[SpecAugment]
    # Augmented copies per training clip it trains on: the first `copies` of the augment stage's
    # `augment.copies` (copies are seeded by their number, so a model that takes 2 of 4 sees
    # exactly what augment.copies: 2 made); null: all of them. Optional.
    copies: Optional[NonNegativeInt] = None
    # Speaker-adversarial training (pipeline.models.adversary): null, off. Optional.
    adversary: Optional[Adversary] = None
    # Networks trained per fit (pipeline.train.fit_ensemble), member k with seed base + 1000 k;
    # the saved model averages their probabilities. 1: one network. Optional.
    ensemble: PositiveInt = 1
    # Seconds per window (pipeline.windows): trains on a random window of each clip (cached whole
    # up to features.seconds), predicts the mean over windows covering the clip. null: the whole
    # cached clip. Optional.
    crop_s: Optional[PositiveFloat] = None
    # The frame features it reads: a subset of features.sequence (its columns, in the cache's
    # order), e.g. [ge2e] while another model reads the log-mel family; null: every column. Optional.
    sequence: Optional[FrameFeatures] = None
    optional: ClassVar[tuple[str, ...]] = ("copies", "adversary", "ensemble", "crop_s", "sequence")


class CnnLstm(Section):
    filters: Widths
    kernel_size: PositiveInt
    pool_size: PositiveInt
    conv_dropout: Rate
    lstm_units: PositiveInt
    lstm_layers: PositiveInt
    bidirectional: bool
    pooling: Literal[CNN_LSTM_POOLINGS]
    dense: Widths
    dropout: Rate
    mask_padding: bool
    specaugment: Optional[SpecAugment]
    recurrent_dropout: Rate = 0.0   # dropout of the LSTM's recurrent state (Keras recurrent_dropout); optional
    l2: NonNegativeFloat = 0.0      # L2 penalty on every kernel (conv, LSTM, dense), added to the loss; optional
    copies: Optional[NonNegativeInt] = None   # as Cnn.copies; optional
    adversary: Optional[Adversary] = None     # as Cnn.adversary; optional
    ensemble: PositiveInt = 1                 # as Cnn.ensemble; optional
    crop_s: Optional[PositiveFloat] = None    # as Cnn.crop_s; optional
    sequence: Optional[FrameFeatures] = None  # as Cnn.sequence; optional
    optional: ClassVar[tuple[str, ...]] = ("recurrent_dropout", "l2", "copies", "adversary", "ensemble", "crop_s",
                                           "sequence")


class Svm(Section):
    input: Literal[STAGE_SVM_INPUTS["svm"]]
    C: PositiveFloat
    gamma: Union[Literal["scale", "auto"], PositiveFloat]
    gram: bool = False        # precompute the RBF kernel with BLAS (pipeline.models.svm); optional
    train_on_val: bool = False   # fit on the validation speakers too (an SVM has no early stopping); optional
    copies: Optional[NonNegativeInt] = None   # as Cnn.copies; optional
    optional: ClassVar[tuple[str, ...]] = ("gram", "train_on_val", "copies")

    @field_validator("gamma", mode="before")
    @classmethod
    def _gamma(cls, value: Any) -> Any:
        if value in ("scale", "auto") or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
            return value
        raise ValueError("must be 'scale', 'auto' or a number > 0")

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, value: Any) -> Any:
        allowed = get_args(cls.model_fields["input"].annotation)
        if value in SVM_INPUTS and value not in allowed:   # a valid input, but not this model's
            raise ValueError(f"is not this model's: its dvc.yaml stages depend on {' and '.join(allowed)} features only "
                             "(eGeMAPS: models.svm, ComParE: models.svm_compare, GE2E: models.svm_ge2e)")
        return value


class SvmCompare(Svm):
    input: Literal[STAGE_SVM_INPUTS["svm_compare"]]


class SvmGe2e(Svm):
    input: Literal[STAGE_SVM_INPUTS["svm_ge2e"]]


class Fusion(Section):
    members: list[str]
    weights: list[PositiveFloat]

    @field_validator("members")
    @classmethod
    def _members(cls, m: list[str]) -> list[str]:
        if len(m) < 2 or len(set(m)) != len(m) or any(x not in MODELS for x in m):
            raise ValueError(f"must list 2 or more distinct models of {list(MODELS)}")
        return m

    @field_validator("weights")
    @classmethod
    def _one_per_member(cls, w: list[float], info: ValidationInfo) -> list[float]:
        members = info.data.get("members")
        if members is not None and len(w) != len(members):
            raise ValueError(f"must hold one number > 0 per member ({len(members)})")
        return w


MODEL_SECTIONS: dict[str, type[Section]] = {"cnn": Cnn, "cnn_lstm": CnnLstm, "svm": Svm, "svm_compare": SvmCompare,
                                             "svm_ge2e": SvmGe2e,
                                             "fusion": Fusion}


class Models(Section):
    cnn: Cnn
    cnn_lstm: CnnLstm
    svm: Svm
    svm_compare: SvmCompare
    svm_ge2e: SvmGe2e
    fusion: Fusion


class Train(Section):
    out: str
    epochs: PositiveInt
    batch_size: PositiveInt
    learning_rate: PositiveFloat
    class_weight: Literal[CLASS_WEIGHTS]
    speaker_norm: bool
    early_stopping_patience: NonNegativeInt
    reduce_lr_patience: NonNegativeInt
    reduce_lr_factor: Share
    lr_schedule: Literal[LR_SCHEDULES]
    threads: PositiveInt
    distribute: Literal[DISTRIBUTE]
    mixup_alpha: NonNegativeFloat
    label_smoothing: Rate
    seeds: Optional[Annotated[list[int], Field(min_length=1)]]

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, value: Optional[list[int]]) -> Optional[list[int]]:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("must be null (base.seed only) or a list of distinct integers, e.g. [42, 43, 44]")
        return value


class SpeakerKfold(Section):
    k: Union[int, str]
    val_share: Share
    train_only: list[str]

    @field_validator("k", mode="before")
    @classmethod
    def _k(cls, value: Any) -> Any:
        if value == "loso" or (isinstance(value, int) and not isinstance(value, bool) and value >= 2):
            return value
        raise ValueError("must be an integer >= 2 or 'loso' (one fold per speaker)")


class CrossCorpus(Section):
    train: Union[str, list[str]]
    test: Union[str, list[str]]
    val_share: Share

    @field_validator("train", mode="before")
    @classmethod
    def _train(cls, value: Any) -> Any:
        if value == "all" or (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
            return value
        raise ValueError("must be 'all' (every corpus but the test one) or a non-empty list of corpora")

    @field_validator("test", mode="before")
    @classmethod
    def _test(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
        raise ValueError("must name a corpus or a non-empty list of corpora")


class Evaluate(Section):
    out: str
    protocol: Literal[PROTOCOLS]
    protocol_out: str
    workers: PositiveInt
    scoreboard: str
    speaker_kfold: SpeakerKfold
    cross_corpus: CrossCorpus


SECTIONS: dict[str, type[Section]] = {
    "base": Base, "data": Data, "custom": Custom, "demo": Demo, "ingest": Ingest, "split": Split, "augment": Augment,
    "features": Features, "models": Models, "train": Train, "evaluate": Evaluate,
}
"""Every mapping section of params.yaml but ``infer`` (:class:`pipeline.infer.InferSettings`,
which the command line and web app also build without a params file) and the ``corpora``
list (checked by :func:`pipeline.params.corpora`)."""
