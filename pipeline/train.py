"""Stage ``train``: fit one model (``--model``, a name of :data:`pipeline.models.BUILDERS`) on the training speakers.

Training data: the ``train`` partition of ``split.csv`` plus the augmented copies of those
clips (:func:`training_rows`; an SVM with ``models.<name>.train_on_val: true`` fits on the
``val`` speakers too, :func:`fit_rows`: it has no early stopping to spend them on), streamed
from the feature cache batch by batch (:mod:`pipeline.feed`: memory holds the model and a
few batches, not the corpus; the same model as loading it all, bit for bit). :func:`train_on` is the whole recipe for any
partition of clips; the ``protocol`` stage calls it once per fold and seed. Standardisation is fitted on
training data only (optionally after per-speaker normalisation, ``train.speaker_norm``) and
saved in the bundle. Class weights, Adam, early stopping on validation UAR with the best
weights restored, learning-rate reduction on validation loss (or a cosine schedule,
``train.lr_schedule``). Seeded and deterministic
(``keras.utils.set_random_seed`` + TensorFlow op determinism). Curves are logged with
DVCLive to ``dvclive/<model>/``; the bundle goes to ``<train.out>/<model>/``.

Run: ``dvc repro train@cnn_lstm`` (``dvc.yaml`` gives ``--live`` and ``--curves``).
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


from pipeline import bundle as B, dataset, feed, params as P, stage
from pipeline.batches import check_spec, make_sequence
from pipeline.extraction import FeatureConfig
from pipeline.feed import Feed, covering, keras_batches
from pipeline.metrics import uar
from pipeline.schema import spec_on
from pipeline.speakers import check_disjoint
from pipeline.windows import check_crop, crop_frames, mean_by_clip


def training_rows(split_rows: pd.DataFrame, *, augment_dir: Path, corpora: list[str],
                  copies: int | None = None, model: str = "<name>") -> pd.DataFrame:
    """The ``train`` rows of ``split_rows`` plus the augmented copies of those clips only.

    ``augment`` makes copies of every clip (so that any fold protocol can use them); a run
    takes the copies whose source clip is one of its own training clips, and with ``copies``
    (``models.<name>.copies``) only the first ``copies`` of each (copy numbers 1 to
    ``copies``; ``None``: all, 0: none). With no copies made (``augment.copies: 0``, the
    switch that turns augmentation off for every model) a run trains on its originals whatever
    ``copies`` says; asking for more copies than the tables hold otherwise is an error naming
    ``augment.copies``. The leak guard: a selected copy whose speaker is a
    validation or test speaker of ``split_rows`` means the augmented table is corrupt, and
    the run refuses to start.
    """
    train = split_rows[split_rows.split == "train"]
    tables = [pd.read_csv(f) for c in corpora if (f := Path(augment_dir) / c / "augmented.csv").is_file()]
    tables = [t for t in tables if len(t)]
    if copies is not None and 0 < (made := max((int(t["copy"].max()) for t in tables), default=0)) < copies:
        raise P.ParamsError(f"params.yaml: models.{model}.copies={copies} asks for more augmented copies per "
                            f"training clip than {augment_dir} holds ({made}): raise augment.copies to at least "
                            f"{copies} and rerun `dvc repro`, or lower models.{model}.copies")
    if not tables or copies == 0:
        return train.assign(source="original")
    aug = pd.concat(tables, ignore_index=True)
    aug = aug[aug.source_id.isin(train.clip_id)]
    if copies is not None:
        aug = aug[aug["copy"] <= copies]
    held_out = set(split_rows.speaker[split_rows.split.isin(["val", "test"])])
    leaked = aug[aug.speaker.isin(held_out)]
    if len(leaked):
        raise ValueError(f"{len(leaked)} augmented copies of training clips name a validation or test speaker "
                         f"(e.g. {leaked.clip_id.iloc[0]} of {leaked.speaker.iloc[0]}); {augment_dir} is stale or "
                         "corrupt: rerun `dvc repro`")
    return pd.concat([train.assign(source="original"), aug.assign(source="augmented", split="train")],
                     ignore_index=True)


def fit_rows(split_rows: pd.DataFrame, *, train_on_val: bool) -> pd.DataFrame:
    """``split_rows`` as a model trains on them: with ``train_on_val`` the validation speakers
    become training speakers (a model without early stopping has no use for held-out
    speakers before the test); ``test`` rows are untouched either way.

    >>> rows = pd.DataFrame({"speaker": ["a", "b", "c"], "split": ["train", "val", "test"]})
    >>> fit_rows(rows, train_on_val=True).split.tolist()
    ['train', 'train', 'test']
    """
    return split_rows.assign(split=split_rows.split.replace("val", "train")) if train_on_val else split_rows


def open_training(rows: pd.DataFrame, *, features_dir: Path, kind: str) -> dataset.Source:
    """The cached features of rows that may mix original and augmented clips, in row order, unread."""
    rows = rows.reset_index(drop=True)
    return dataset.concat([dataset.open_source(g, features_dir=features_dir, kind=kind, source=src)
                           for src, g in rows.groupby("source", sort=False)])


def class_weights(y: np.ndarray, n_classes: int, mode: str) -> dict[int, float] | None:
    """``balanced``: n / (n_classes * count) per class present; ``none``: None."""
    if mode == "none":
        return None
    counts = np.bincount(y, minlength=n_classes)
    return {i: float(len(y) / (np.count_nonzero(counts) * c)) for i, c in enumerate(counts) if c}


def corpus_weights(y: np.ndarray, groups: np.ndarray, n_classes: int) -> np.ndarray:
    """``train.class_weight: per_corpus``: one weight per example (float32), the classes
    balanced within each corpus and then across corpora.

    Within corpus ``c`` of ``n_c`` examples and ``K_c`` classes, class ``k`` weighs
    ``n_c / (K_c * n_ck)`` an example (every class the same share of the corpus, so a class
    one corpus holds more of, like SAVEE's neutral, is no cue for that corpus); each class is
    then scaled by one factor for every corpus, to the equal totals ``n / K`` that ``balanced``
    gives (a class some corpora lack, like EMO-DB's surprised, is scaled up in the others), so
    two classes weigh in the same ratio in every corpus that holds both. With one corpus this
    is ``balanced``.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    if len(y) != len(groups):
        raise ValueError(f"{len(y)} labels but {len(groups)} corpus names; give one corpus per training example")
    weights = np.zeros(len(y), np.float64)
    for corpus in np.unique(groups):
        at = groups == corpus
        counts = np.bincount(y[at], minlength=n_classes)
        weights[at] = at.sum() / (np.count_nonzero(counts) * counts[y[at]])
    totals = np.bincount(y, weights=weights, minlength=n_classes)
    present = np.bincount(y, minlength=n_classes) > 0
    scale = np.divide(len(y) / present.sum(), totals, out=np.zeros(n_classes), where=present)
    return (weights * scale[y]).astype(np.float32)


def configure_determinism(seed: int, *, threads: int) -> None:
    """Seed Python, NumPy and TensorFlow, turn on op determinism and fix the thread counts
    (bitwise results depend on them), so the same params give the same model."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already initialised in this process (e.g. a second fit in tests)
        pass


def distribution(mode: str):
    """The ``tf.distribute`` strategy for ``train.distribute``: ``auto`` mirrors the model over
    every visible GPU when there are two or more and else uses one device; ``off`` always one
    device; ``mirrored`` always mirrors, over the GPUs or, without any, over the logical CPU
    devices (how the tests run it). The batch size stays global (split across replicas)."""
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if mode == "off" or (mode == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()       # the default strategy: one device, as without any
    if gpus:
        return tf.distribute.MirroredStrategy(devices=gpus)
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())


def cosine_rate(epoch: int, *, rate: float, epochs: int) -> float:
    """``train.lr_schedule: cosine``: the learning rate of epoch ``epoch`` (0-based), from
    ``rate`` at the first epoch down a half cosine toward 0 at epoch ``epochs`` (never reached:
    the last epoch trains at ``rate * (1 - cos(pi / epochs)) / 2``)."""
    return float(rate * 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs)))


ENSEMBLE_SEED_STEP = 1000
"""Member k of an ensemble (``models.<name>.ensemble``) trains with seed ``seed + 1000 k``:
member 0 is the single network of the same seed, and the ensembles of nearby seeds
(``train.seeds: [42, 43, 44]``) share no member."""


def average_models(models: list, *, name: str):
    """One Keras model whose output is the mean of ``models``' probabilities (same input shape);
    each member sits in it as a sub-model ``member_<k>``, so the result saves, loads, predicts
    and exports as one model."""
    import keras

    first = models[0]
    inputs = keras.Input(shape=tuple(first.input_shape[1:]), name=first.layers[0].name)
    outputs = [keras.Model(m.input, m.output, name=f"member_{k}")(inputs) for k, m in enumerate(models)]
    return keras.Model(inputs, keras.layers.Average(name="ensemble_mean")(outputs), name=name)


def epochs_trained(history: dict) -> list[int]:
    """The epochs each network of a :func:`fit` trained: one number, or one per member of an
    ensemble (its history's ``member_epochs``)."""
    if "member_epochs" in history:
        return [int(n) for n in history["member_epochs"]]
    return [len(next(iter(history.values())))]


def fit_ensemble(members: int, *, model_name: str, model_params: dict, seed: int, x_val, y_val, verbose: int = 2,
                 **kwargs):
    """``models.<name>.ensemble: members``: that many networks, each fitted as :func:`fit` fits
    one (early stopping on the validation speakers alike), member k with seed ``seed +
    ENSEMBLE_SEED_STEP * k``, then :func:`average_models`. Returns (model, history): each
    history key holds the members' epochs one after another (DVCLive's steps run on through
    the members), ``member_epochs`` how many each trained (:func:`epochs_trained`), and
    ``val_uar_ensemble`` the averaged model's validation UAR."""
    single, nets, history, member_epochs = {**model_params, "ensemble": 1}, [], {}, []
    for k in range(members):
        if verbose:
            print(f"fit {model_name}: ensemble member {k + 1} of {members}, seed {seed + ENSEMBLE_SEED_STEP * k}")
        net, h = fit(model_name=model_name, model_params=single, seed=seed + ENSEMBLE_SEED_STEP * k,
                     x_val=x_val, y_val=y_val, verbose=verbose, **kwargs)
        nets.append(net)
        member_epochs.append(epochs_trained(h)[0])
        for key, values in h.items():
            history.setdefault(key, []).extend(values)
    history["member_epochs"] = member_epochs
    model = average_models(nets, name=f"{model_name}_ensemble")
    if x_val is not None and len(x_val):
        val = Feed.of(x_val)
        seen, clip = (val, np.arange(len(val))) if kwargs.get("crop") is None else covering(val, width=kwargs["crop"])
        probs = [np.asarray(model(seen.read(np.arange(i, min(i + 256, len(seen)))), training=False))
                 for i in range(0, len(seen), 256)]
        probs = mean_by_clip(np.concatenate(probs), clip, n=len(val))
        history["val_uar_ensemble"] = [uar(np.asarray(y_val), np.argmax(probs, axis=1))]
    return model, history


def fit(*, model_name: str, model_params: dict, train_cfg: dict, seed: int, x_train, y_train, x_val, y_val,
        labels: list[str], groups=None, speakers=None, crop: int | None = None, live=None, verbose: int = 2):
    """Build and fit a model; returns (model, history dict). Pure apart from TensorFlow state.

    ``x_train`` and ``x_val`` are standardised model input: arrays, or :class:`pipeline.feed.Feed`
    objects that read it from the cache batch by batch (the same result, bit for bit). Keras
    models train for up to ``train.epochs`` with early stopping on validation UAR; the
    scikit-learn SVM is fitted once on all of it (its history has one entry per metric).
    ``groups`` is the corpus of every training example, which ``train.class_weight: per_corpus``
    needs (:func:`corpus_weights`); ``speakers`` its speaker, which ``models.<name>.adversary``
    needs (:mod:`pipeline.models.adversary`: the returned model is the emotion model alone).
    ``models.<name>.ensemble`` above 1 fits that many networks (:func:`fit_ensemble`).
    ``crop``: the frames of ``models.<name>.crop_s`` (:func:`pipeline.windows.crop_frames`):
    the network takes windows that long, a random one per clip in each training batch, and is
    validated on the mean over the windows covering each validation clip (:mod:`pipeline.windows`);
    array input (no ``n_frames``) counts every frame as real."""
    from pipeline.models import build, is_keras

    if model_params.get("crop_s") is not None and crop is None:
        raise ValueError(f"models.{model_name}.crop_s is {model_params['crop_s']}: pass its window in frames, "
                         "crop=pipeline.windows.crop_frames(model_params, feature_config)")
    members = int(model_params.get("ensemble") or 1)
    if members > 1 and is_keras(model_name):
        return fit_ensemble(members, model_name=model_name, model_params=model_params, train_cfg=train_cfg, seed=seed,
                            x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, labels=labels,
                            groups=groups, speakers=speakers, crop=crop, live=live, verbose=verbose)

    train, val = Feed.of(x_train), None if x_val is None or len(x_val) == 0 else Feed.of(x_val)
    y_train = np.asarray(y_train)
    mode, weights, per_example = train_cfg["class_weight"], None, None
    if mode == "per_corpus":
        if groups is None:
            raise ValueError("train.class_weight='per_corpus' needs the corpus of every training example (groups=...)")
        per_example = corpus_weights(y_train, groups, len(labels))
    else:
        weights = class_weights(y_train, len(labels), mode)
    if not is_keras(model_name):   # a kernel SVM needs every example at once (functionals: 88 numbers a clip)
        x = train.all()
        model = build(model_name, input_shape=train.shape, num_classes=len(labels), params=model_params)
        model.fit(x, y_train, class_weight=weights, seed=seed, sample_weight=per_example)
        history = {"accuracy": [float(np.mean(np.argmax(model(x), axis=1) == y_train))]}
        if val is not None:
            history["val_uar"] = [uar(y_val, np.argmax(model(val.all()), axis=1))]
        if live is not None:
            for key, values in history.items():
                live.log_metric(key, values[0])
            live.next_step()
        return model, history

    import keras
    import tensorflow as tf

    from pipeline.models.adversary import emotion_accuracy, joint_loss, with_adversary

    keras.backend.clear_session()  # fresh layer/optimizer name counters: the same fit saves the same config
    configure_determinism(seed, threads=int(train_cfg["threads"]))
    strategy = distribution(train_cfg["distribute"])
    shape = train.shape if crop is None else (crop,) + tuple(train.shape[1:])
    with strategy.scope():
        model = build(model_name, input_shape=shape, num_classes=len(labels), params=model_params)
    spec = check_spec(model_params["specaugment"], key=f"models.{model_name}.specaugment")
    mixup_alpha, smoothing = float(train_cfg["mixup_alpha"]), float(train_cfg["label_smoothing"])
    adversary, speaker_ids, n_speakers = model_params.get("adversary"), None, 0
    if adversary:
        if speakers is None:
            raise ValueError(f"models.{model_name}.adversary needs the speaker of every training example (speakers=...)")
        if len(speakers) != len(y_train):
            raise ValueError(f"models.{model_name}.adversary: {len(speakers)} speakers for {len(y_train)} training "
                             "examples; give one speaker per training example")
        names, speaker_ids = np.unique(np.asarray(speakers), return_inverse=True)
        n_speakers = len(names)
        with strategy.scope():
            trainer = with_adversary(model, speakers=n_speakers, weight=float(adversary["weight"]),
                                     dense=adversary["dense"])
    else:
        trainer = model
    batched = mixup_alpha > 0 or smoothing > 0 or spec_on(spec) or bool(adversary) or crop is not None
    batch_size = int(train_cfg["batch_size"])
    x_spec = tf.TensorSpec((None,) + shape, tf.float32)
    if batched:  # one-hot (soft) labels; class weights travel as sample weights
        data = make_sequence(train, y_train, num_classes=len(labels), class_weight=weights,
                             batch_size=batch_size, seed=seed, mixup_alpha=mixup_alpha, spec=spec,
                             sample_weight=per_example, speakers=speaker_ids, num_speakers=n_speakers, crop=crop)
    else:        # Keras's own order and class weights, as ``fit(x, y, shuffle=True, class_weight=...)``
        w = np.ones(len(labels), np.float32)
        for c, v in (weights or {}).items():
            w[c] = v
        sample_weight = w[y_train] if per_example is None else per_example
        data = keras_batches(len(train), lambda i: (train.read(i), y_train[i].astype(np.int64), sample_weight[i]),
                             [x_spec, tf.TensorSpec((None,), tf.int64), tf.TensorSpec((None,), tf.float32)],
                             batch_size=batch_size, shuffle=True, min_batch=int(strategy.num_replicas_in_sync))
    with strategy.scope():
        if adversary:
            loss, metrics = joint_loss(len(labels), label_smoothing=smoothing), [emotion_accuracy(len(labels))]
        else:
            loss, metrics = (keras.losses.CategoricalCrossentropy(label_smoothing=smoothing) if smoothing > 0
                             else "categorical_crossentropy" if batched else "sparse_categorical_crossentropy"), ["accuracy"]
        trainer.compile(optimizer=keras.optimizers.Adam(learning_rate=float(train_cfg["learning_rate"])),
                        loss=loss, metrics=metrics)

    callbacks, validation = [], None
    if val is not None:
        y_val = np.asarray(y_val)
        # with crops: every window covering a validation clip, labelled as its clip (val_loss),
        # and the clip's probabilities the mean of its windows' (val_uar)
        seen, clip = (val, np.arange(len(val))) if crop is None else covering(val, width=crop)
        y_fit = np.eye(len(labels), dtype=np.float32)[y_val[clip]] if batched else y_val.astype(np.int64)
        if adversary:   # no speaker targets: validation speakers are not training speakers
            y_fit = np.concatenate([y_fit, np.zeros((len(y_fit), n_speakers), np.float32)], axis=1)
        replicas = int(strategy.num_replicas_in_sync)   # each needs an example of every batch
        validation = keras_batches(len(seen), lambda i: (seen.read(i), y_fit[i]),
                                   [x_spec, tf.TensorSpec((None,) + y_fit.shape[1:], y_fit.dtype)],
                                   batch_size=batch_size, shuffle=False, min_batch=replicas)
        val_inputs = keras_batches(len(seen), lambda i: (seen.read(i),), [x_spec], batch_size=256, shuffle=False,
                                   min_batch=replicas)

        class ValUAR(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                probs = self.model.predict(val_inputs, verbose=0)[:, :len(labels)]   # the emotion columns
                logs["val_uar"] = uar(y_val, np.argmax(mean_by_clip(probs, clip, n=len(val)), axis=1))

        callbacks += [ValUAR(),
                      keras.callbacks.EarlyStopping(monitor="val_uar", mode="max", patience=int(train_cfg["early_stopping_patience"]),
                                                    restore_best_weights=True)]
        if train_cfg["lr_schedule"] == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=float(train_cfg["reduce_lr_factor"]),
                                                               patience=int(train_cfg["reduce_lr_patience"])))
    if train_cfg["lr_schedule"] == "cosine":
        rate, epochs = float(train_cfg["learning_rate"]), int(train_cfg["epochs"])
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch: cosine_rate(epoch, rate=rate, epochs=epochs)))
    if live is not None:
        from dvclive.keras import DVCLiveCallback
        callbacks.append(DVCLiveCallback(live=live))
    # shuffle: Keras also shuffles the order in which it asks the PyDataset for its batches (as
    # it did before training streamed; ignored for the tf.data pipeline, which orders its own)
    history = trainer.fit(data, validation_data=validation, epochs=int(train_cfg["epochs"]), shuffle=batched,
                          callbacks=callbacks, verbose=verbose)
    return model, history.history


@dataclass
class Trained:
    """A model fitted by :func:`train_on`, with its scaler and what it was trained on."""

    bundle: B.Bundle          # in memory; ``bundle.info`` has train_speakers, clip counts, epochs
    history: dict
    train_rows: pd.DataFrame  # originals and augmented copies actually used
    n_val: int


def train_on(rows: pd.DataFrame, *, name: str, model_params: dict, cfg: dict, seed: int, labels: list[str],
             features_dir: Path, augment_dir: Path, live=None, verbose: int = 2) -> Trained:
    """Fit ``name`` on the ``train`` rows of ``rows`` (plus their augmented copies), with
    early stopping on its ``val`` rows; ``test`` rows are never read. A model whose section
    sets ``train_on_val`` (the SVMs, which have no early stopping) trains on the ``val``
    speakers too (:func:`fit_rows`).

    Everything fitted comes from the training rows only: the scaler (and per-speaker
    statistics with ``train.speaker_norm``), the class weights, the augmented copies.
    """
    from pipeline.models import check_params, input_kind

    check_disjoint(rows)
    checked = check_params(name, model_params)
    rows = fit_rows(rows, train_on_val=bool(checked.get("train_on_val")))
    kind = input_kind(name, model_params)
    corpora = sorted(rows.corpus.unique())
    label_index = {c: i for i, c in enumerate(labels)}
    train = open_training(training_rows(rows, augment_dir=augment_dir, corpora=corpora, copies=checked.get("copies"),
                                       model=name),
                          features_dir=features_dir, kind=kind)
    has_val = (rows.split == "val").any()
    val = dataset.open_source(rows[rows.split == "val"], features_dir=features_dir, kind=kind) if has_val else None
    meta = dataset.feature_meta(features_dir, corpora[0])  # the feature config (functionals use its preparation)
    read = checked.get("sequence") if kind == "sequence" else None    # some of the frame features only
    if read is not None:
        columns = FeatureConfig.from_dict(meta["config"]).columns(read, key=f"models.{name}.sequence")
        train, val = train.select(columns), (val.select(columns) if val is not None else None)
    crop = crop_frames(model_params, meta["config"], key=f"models.{name}.crop_s")
    check_crop(crop, kind=kind, frames=train.shape[0], crop_s=model_params.get("crop_s"),
               seconds=meta["config"].get("seconds"), key=f"models.{name}.crop_s")
    speaker_norm = bool(cfg["speaker_norm"])
    mean, std, train_stats = feed.scaler(train, speaker_norm=speaker_norm)

    def prep(source, stats=None):  # each set normalised per speaker with its own speakers' clips (labels unused)
        if speaker_norm and stats is None:
            stats = feed.speaker_stats(source)
        return feed.standardised(source, mean=mean, std=std, stats=stats)

    y_train = train.rows.label.map(label_index).to_numpy()
    x_val, y_val = (prep(val), val.rows.label.map(label_index).to_numpy()) if val is not None else (None, None)
    if verbose:
        print(f"train {name}: {len(train.rows)} training clips ({int((train.rows.source == 'augmented').sum())} "
              f"augmented) from {train.rows.speaker.nunique()} speakers, {0 if val is None else len(val.rows)} "
              f"validation clips, input {kind} {train.shape}, {len(train.missing)} clips without features")
    model, history = fit(model_name=name, model_params=model_params, train_cfg=cfg, seed=seed, x_train=prep(train, train_stats),
                         y_train=y_train, x_val=x_val, y_val=y_val, labels=labels, groups=train.rows.corpus.to_numpy(),
                         speakers=train.rows.speaker.to_numpy(), crop=crop, live=live, verbose=verbose)
    info = {"model": name, "model_params": model_params, "seed": seed,
            "epochs_run": sum(epochs_trained(history)),   # an ensemble's members' added up
            "feature_dtype": dataset.feature_meta(features_dir, corpora[0], kind=kind)["dtype"], "train_clips": len(train.rows),
            "train_speakers": sorted(train.rows.speaker.unique())}
    if read is not None:
        info["sequence_features"] = list(read)   # the bundle reads these columns of the frame features
    if "member_epochs" in history:
        info["member_epochs"] = epochs_trained(history)
    bundle = B.Bundle(model=model, labels=list(labels), input_kind=kind, feature_config=meta["config"],
                      speaker_norm=speaker_norm, mean=mean, std=std, info=info)
    return Trained(bundle=bundle, history=history, train_rows=train.rows, n_val=0 if val is None else len(val.rows))


def best_val_uar(history: dict) -> float | None:
    """The best validation UAR over the epochs (the restored weights'), an ensemble's own
    (``val_uar_ensemble``), or None without validation."""
    if history.get("val_uar_ensemble"):
        return float(history["val_uar_ensemble"][0])
    return float(max(history["val_uar"])) if history.get("val_uar") else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--live", type=Path, required=True, help="DVCLive folder (dvc.yaml: dvclive/<model>)")
    ap.add_argument("--curves", type=Path, required=True, help="training curves PNG (dvc.yaml: plots/<model>/curves.png)")
    args = ap.parse_args(argv)
    params = P.load()
    from pipeline.models import BUILDERS
    name = P.choice(args.model, key="--model", valid=BUILDERS)
    seed = P.section(params, "base")["seed"]
    cfg, model_params = P.section(params, "train"), P.section(params, "models")[name]
    data, split, features, augment = (P.section(params, s) for s in ("data", "split", "features", "augment"))
    rows = pd.read_csv(Path(data["interim"]) / "split.csv", dtype={"source_label": str})

    from dvclive import Live
    t0 = time.perf_counter()
    with Live(dir=str(args.live), dvcyaml=False, save_dvc_exp=False) as live:
        trained = train_on(rows, name=name, model_params=model_params, cfg=cfg, seed=seed,
                           labels=split["classes"], features_dir=Path(features["out"]),
                           augment_dir=Path(augment["out"]), live=live)
        best = best_val_uar(trained.history)
        if best is not None:  # what `ser sweep` ranks by: validation speakers, never test speakers
            live.summary["best"] = ({"val_uar": best} if "val_uar_ensemble" in trained.history else
                                    {"val_uar": best, "epoch": int(np.argmax(trained.history["val_uar"]))})
    out = Path(cfg["out"]) / name
    b = trained.bundle
    B.save(out, model=b.model, labels=b.labels, input_kind=b.input_kind, feature_config=b.feature_config,
           speaker_norm=b.speaker_norm, mean=b.mean, std=b.std, info=b.info)
    from pipeline.plots import training_curves
    training_curves(trained.history, args.curves, title=name)
    each = b.info.get("member_epochs")
    each = f" ({'+'.join(map(str, each))}, {len(each)} networks)" if each else ""
    print(f"train {name}: {b.info['epochs_run']} epochs{each} in {time.perf_counter() - t0:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    stage.run(main, name="train", errors=(dataset.CacheError,), allocator="unmap")
