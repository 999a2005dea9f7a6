"""Stage ``train``: fit one model (``--model cnn`` or ``cnn_lstm``) on the training speakers.

Training data: the ``train`` partition of ``split.csv`` plus its augmented copies (every copy
must come from a training clip, or the stage refuses to run). Standardisation is fitted on
training data only (optionally after per-speaker normalisation, ``train.speaker_norm``) and
saved in the bundle. Class weights, Adam, early stopping on validation UAR with the best
weights restored, learning-rate reduction on validation loss. Seeded and deterministic
(``keras.utils.set_random_seed`` + TensorFlow op determinism). Curves are logged with
DVCLive to ``dvclive/<model>/``; the bundle goes to ``<train.out>/<model>/``.

Run: ``python -m pipeline.train --model cnn_lstm``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

# TensorFlow's C++ logging repeats harmless notices every epoch; set TF_CPP_MIN_LOG_LEVEL=0 to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pipeline import bundle as B, dataset, params as P
from pipeline.split import check_disjoint


def training_rows(split_rows: pd.DataFrame, *, augment_dir: Path, corpora: list[str]) -> pd.DataFrame:
    """Training rows plus their augmented copies; raises if a copy's source is not a
    training clip (the leak guard)."""
    train = split_rows[split_rows.split == "train"]
    copies = [pd.read_csv(f) for c in corpora if (f := Path(augment_dir) / c / "augmented.csv").is_file()]
    copies = [c for c in copies if len(c)]
    if not copies:
        return train.assign(source="original")
    aug = pd.concat(copies, ignore_index=True)
    leaked = aug[~aug.source_id.isin(train.clip_id)]
    if len(leaked):
        raise ValueError(f"{len(leaked)} augmented clips come from clips outside the training partition "
                         f"(e.g. {leaked.source_id.iloc[0]}); rerun `dvc repro` so augment follows the split")
    return pd.concat([train.assign(source="original"), aug.assign(source="augmented")], ignore_index=True)


def load_features(rows: pd.DataFrame, *, features_dir: Path, kind: str) -> dataset.Features:
    """Features for rows that may mix original and augmented clips, in row order."""
    rows = rows.reset_index(drop=True)
    parts = [dataset.load(g, features_dir=features_dir, kind=kind, source=src) for src, g in rows.groupby("source", sort=False)]
    x = np.concatenate([p.x for p in parts])
    n = np.concatenate([p.n_frames for p in parts])
    r = pd.concat([p.rows for p in parts], ignore_index=True)
    return dataset.Features(x=x, n_frames=n, rows=r, missing=sum((p.missing for p in parts), []))


def class_weights(y: np.ndarray, n_classes: int, mode: str) -> dict[int, float] | None:
    """``balanced``: n / (n_classes * count) per class present; ``none``: None."""
    if mode == "none":
        return None
    counts = np.bincount(y, minlength=n_classes)
    return {i: float(len(y) / (np.count_nonzero(counts) * c)) for i, c in enumerate(counts) if c}


def uar(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted average recall over the classes present in ``y_true``."""
    classes = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


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


def fit(*, model_name: str, model_params: dict, train_cfg: dict, seed: int, x_train, y_train, x_val, y_val,
        labels: list[str], live=None):
    """Build and fit a model; returns (model, history dict). Pure apart from TensorFlow state."""
    import keras

    from pipeline.models import build

    keras.backend.clear_session()  # fresh layer/optimizer name counters: the same fit saves the same config
    configure_determinism(seed, threads=int(train_cfg.get("threads", 2)))
    model = build(model_name, input_shape=x_train.shape[1:], num_classes=len(labels), params=model_params)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=float(train_cfg["learning_rate"])),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    has_val = x_val is not None and len(x_val) > 0

    class ValUAR(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            pred = np.argmax(self.model.predict(x_val, batch_size=256, verbose=0), axis=1)
            logs["val_uar"] = uar(y_val, pred)

    callbacks = []
    if has_val:
        callbacks += [ValUAR(),
                      keras.callbacks.EarlyStopping(monitor="val_uar", mode="max", patience=int(train_cfg["early_stopping_patience"]),
                                                    restore_best_weights=True),
                      keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=float(train_cfg["reduce_lr_factor"]),
                                                        patience=int(train_cfg["reduce_lr_patience"]))]
    if live is not None:
        from dvclive.keras import DVCLiveCallback
        callbacks.append(DVCLiveCallback(live=live))
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val) if has_val else None,
                        epochs=int(train_cfg["epochs"]), batch_size=int(train_cfg["batch_size"]), shuffle=True,
                        class_weight=class_weights(y_train, len(labels), train_cfg["class_weight"]),
                        callbacks=callbacks, verbose=2)
    return model, history.history


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    args = ap.parse_args(argv)
    params = P.load()
    seed = int(P.require(params, "base.seed"))
    cfg = P.require(params, "train")
    from pipeline.models import BUILDERS, check_params, input_kind
    name = P.choice(args.model, key="--model", valid=BUILDERS)
    model_params = check_params(name, P.require(params, f"models.{name}"))
    P.choice(cfg["class_weight"], key="train.class_weight", valid=("balanced", "none"))
    for key in ("epochs", "batch_size", "learning_rate"):
        P.positive(cfg[key], key=f"train.{key}")
    kind = input_kind(name, model_params)
    features_dir = Path(P.require(params, "features.out"))
    classes = list(P.require(params, "split.classes"))

    rows = pd.read_csv(Path(P.require(params, "data.interim")) / "split.csv", dtype={"source_label": str})
    check_disjoint(rows)
    corpora = sorted(rows.corpus.unique())
    label_index = {c: i for i, c in enumerate(classes)}
    train = load_features(training_rows(rows, augment_dir=Path(P.require(params, "augment.out")), corpora=corpora),
                          features_dir=features_dir, kind=kind)
    val = dataset.load(rows[rows.split == "val"], features_dir=features_dir, kind=kind) if (rows.split == "val").any() else None
    speaker_norm = bool(cfg["speaker_norm"])
    mean, std = B.fit_stats(B.speaker_normalise(train.x, train.n_frames, train.rows.speaker) if speaker_norm else train.x,
                            train.n_frames)

    def prep(f):
        return B.standardise(f.x, f.n_frames, mean=mean, std=std, speakers=f.rows.speaker if speaker_norm else None)

    y_train = train.rows.label.map(label_index).to_numpy()
    x_val, y_val = (prep(val), val.rows.label.map(label_index).to_numpy()) if val is not None else (None, None)
    print(f"train {name}: {len(train.rows)} training clips ({int((train.rows.source == 'augmented').sum())} augmented) "
          f"from {train.rows.speaker.nunique()} speakers, {0 if val is None else len(val.rows)} validation clips, "
          f"input {kind} {train.x.shape[1:]}, {len(train.missing)} clips without features")

    from dvclive import Live
    t0 = time.perf_counter()
    with Live(dir=f"dvclive/{name}", dvcyaml=False, save_dvc_exp=False) as live:
        model, history = fit(model_name=name, model_params=model_params, train_cfg=cfg, seed=seed,
                             x_train=prep(train), y_train=y_train, x_val=x_val, y_val=y_val, labels=classes, live=live)
    out = Path(P.require(params, "train.out")) / name
    meta = dataset.feature_meta(features_dir, corpora[0])
    B.save(out, model=model, labels=classes, input_kind=kind, feature_config=meta["config"],
           speaker_norm=speaker_norm, mean=mean, std=std,
           info={"model": name, "model_params": model_params, "seed": seed, "epochs_run": len(history["loss"]),
                 "feature_dtype": meta["dtype"],
                 "train_clips": len(train.rows), "train_speakers": sorted(train.rows.speaker.unique())})
    from pipeline.plots import training_curves
    training_curves(history, Path("plots") / name / "curves.png", title=name)
    print(f"train {name}: {len(history['loss'])} epochs in {time.perf_counter() - t0:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except P.ParamsError as err:
        sys.exit(f"train: {err}")
