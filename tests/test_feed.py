"""Training and prediction streamed from the feature cache (pipeline.feed, dataset.Source):
the same numbers as the whole set in memory, bit for bit, while never reading more than a
block of clips at once."""
import json

import numpy as np
import pandas as pd
import pytest

from fakes import PARAMS
from pipeline import bundle as B, dataset, feed
from pipeline.train import fit, fit_rows, open_training, train_on, training_rows

LABELS = ["angry", "happy", "sad"]
TINY_CNN = {"input": "sequence", "pooling": "stats", "filters": [8], "kernel_size": 3, "pool_size": 2, "dropout": 0.2,
            "dense": [8], "mask_padding": False, "conv": "1d", "stride": 1, "specaugment": None}
TRAIN = {**PARAMS["train"], "epochs": 3, "batch_size": 32, "learning_rate": 0.01, "class_weight": "balanced",
         "early_stopping_patience": 3, "reduce_lr_patience": 1, "reduce_lr_factor": 0.5, "threads": 1,
         "speaker_norm": False, "mixup_alpha": 0.0}
FRAMES, FEATURES = 24, 5


def _write_cache(where, ids, rng, *, offset: float):
    where.mkdir(parents=True)
    y = np.array([i % 3 for i in range(len(ids))])
    x = rng.standard_normal((len(ids), FRAMES, FEATURES)) * 3 + offset
    x[np.arange(len(ids)), :, y] += 2.0
    n = rng.integers(8, FRAMES + 1, len(ids)).astype(np.int32)
    x[np.arange(FRAMES)[None, :] >= n[:, None]] = 0.0
    np.save(where / "sequence.npy", x.astype(np.float16))
    np.save(where / "utterance.npy", x.mean(axis=1).astype(np.float16))
    np.save(where / "n_frames.npy", n)
    pd.DataFrame({"clip_id": ids}).to_csv(where / "index.csv", index=False)
    (where / "meta.json").write_text(json.dumps({"config": {"sr": 16000}, "dtype": "float16"}))
    return y


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two corpora of 6 speakers x 60 clips with one augmented copy each, cached as the
    features stage writes them (float16, shuffled file order against the split's row order)."""
    base = tmp_path_factory.mktemp("feed")
    rng = np.random.default_rng(0)
    rows, copies = [], []
    for c, corpus in enumerate(["ravdess", "savee"]):
        ids = [f"{corpus}:{s}_{i}" for s in range(6) for i in range(60)]
        file_order = rng.permutation(len(ids))
        y = _write_cache(base / "features" / "original" / corpus, [ids[i] for i in file_order], rng, offset=c)
        labels = dict(zip([ids[i] for i in file_order], y))
        for k, cid in enumerate(ids):
            split = ["train", "train", "train", "train", "val", "test"][k // 60]
            rows.append({"clip_id": cid, "corpus": corpus, "speaker": f"{corpus}_{k // 60}", "label": LABELS[labels[cid]],
                         "split": split})
        aug_ids = [f"{cid}#aug0" for cid in ids]
        y_aug = _write_cache(base / "features" / "augmented" / corpus, aug_ids, rng, offset=c + 0.5)
        copies.append(pd.DataFrame({"clip_id": aug_ids, "source_id": ids, "corpus": corpus,
                                    "speaker": [f"{corpus}_{k // 60}" for k in range(len(ids))],
                                    "label": [LABELS[v] for v in y_aug]}))
        (base / "augment" / corpus).mkdir(parents=True)
        copies[-1].to_csv(base / "augment" / corpus / "augmented.csv", index=False)
    return base, pd.DataFrame(rows)


def test_a_source_reads_any_rows_in_any_order_as_the_whole_load_does(corpus):
    base, rows = corpus
    mixed = rows.sample(frac=1.0, random_state=1)
    whole = dataset.load(mixed, features_dir=base / "features", kind="sequence")
    src = dataset.open_source(mixed, features_dir=base / "features", kind="sequence")
    idx = np.array([5, 700, 3, 3, 719, 0, 1, 2, 360])
    assert np.array_equal(src.read(idx), whole.x[idx]) and src.read(idx).dtype == np.float32
    assert np.array_equal(src.subset(idx).read(), whole.x[idx])
    joined = np.concatenate([x for _, x in src.chunks(100)])
    assert np.array_equal(joined, whole.x) and np.array_equal(src.n_frames, whole.n_frames)


@pytest.mark.parametrize("block", [1, 7, 256, 10_000])
def test_the_scaler_fitted_block_by_block_is_numpys_mean_and_std_bit_for_bit(block):
    rng = np.random.default_rng(block)
    x = (rng.standard_normal((300, 40, 9)) * 5 + 2).astype(np.float16).astype(np.float32)
    n = rng.integers(1, 41, 300)
    frames = x[B.valid_mask(x, n)]
    mean, std = B.fit_stats_blocks(lambda: ((x[i:i + block], n[i:i + block]) for i in range(0, 300, block)))
    assert np.array_equal(mean, frames.mean(axis=0, dtype=np.float64))
    assert np.array_equal(std, frames.std(axis=0, dtype=np.float64))


@pytest.mark.parametrize("speaker_norm", [False, True])
def test_streamed_training_gives_the_in_memory_model_bit_for_bit(corpus, speaker_norm):
    """train_on (streaming) against the recipe on whole arrays: the old in-memory path, with
    Keras's own array shuffling and class weights."""
    base, rows = corpus
    cfg = {**TRAIN, "speaker_norm": speaker_norm}
    trained = train_on(rows, name="cnn", model_params=TINY_CNN, cfg=cfg, seed=7, labels=LABELS,
                       features_dir=base / "features", augment_dir=base / "augment", verbose=0)

    import keras
    from pipeline.train import class_weights, configure_determinism
    from pipeline.models import build
    from pipeline.metrics import uar

    train = open_training(training_rows(rows, augment_dir=base / "augment", corpora=["ravdess", "savee"]),
                          features_dir=base / "features", kind="sequence").features()
    val = dataset.load(rows[rows.split == "val"], features_dir=base / "features", kind="sequence")
    spk = train.rows.speaker if speaker_norm else None
    mean, std = B.fit_stats(B.speaker_normalise(train.x, train.n_frames, spk) if speaker_norm else train.x, train.n_frames)
    assert np.array_equal(mean, trained.bundle.mean) and np.array_equal(std, trained.bundle.std)
    z = B.standardise(train.x, train.n_frames, mean=mean, std=std, speakers=spk)
    zv = B.standardise(val.x, val.n_frames, mean=mean, std=std, speakers=val.rows.speaker if speaker_norm else None)
    index = {c: i for i, c in enumerate(LABELS)}
    y, yv = train.rows.label.map(index).to_numpy(), val.rows.label.map(index).to_numpy()
    keras.backend.clear_session()
    configure_determinism(7, threads=1)
    model = build("cnn", input_shape=z.shape[1:], num_classes=3, params=TINY_CNN)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    class ValUAR(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_uar"] = uar(yv, np.argmax(self.model.predict(zv, batch_size=256, verbose=0), axis=1))

    history = model.fit(z, y, validation_data=(zv, yv), epochs=3, batch_size=32, shuffle=True, verbose=0,
                        class_weight=class_weights(y, 3, "balanced"),
                        callbacks=[ValUAR(), keras.callbacks.EarlyStopping(monitor="val_uar", mode="max", patience=3,
                                                                           restore_best_weights=True),
                                   keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)])
    assert history.history == trained.history
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), trained.bundle.model.get_weights()))


def test_streamed_prediction_gives_each_clip_the_whole_set_probabilities(corpus):
    base, rows = corpus
    x = np.random.default_rng(3).standard_normal((90, FRAMES, FEATURES)).astype(np.float32)
    y = np.arange(90) % 3
    model, _ = fit(model_name="cnn", model_params=TINY_CNN, train_cfg={**TRAIN, "epochs": 1}, seed=0, x_train=x,
                   y_train=y, x_val=None, y_val=None, labels=LABELS)
    test = rows[rows.split.isin(["test", "val"])].sample(frac=1.0, random_state=2)
    whole = dataset.load(test, features_dir=base / "features", kind="sequence")
    for speaker_norm in (False, True):
        mean, std = B.fit_stats(whole.x, whole.n_frames)
        b = B.Bundle(model=model, labels=LABELS, input_kind="sequence", feature_config={}, speaker_norm=speaker_norm,
                     mean=mean, std=std, info={})
        sources = feed.open_inputs(test, features_dir=base / "features", kinds=["sequence"])
        expected = b.predict_proba(whole.x, whole.n_frames, speakers=whole.rows.speaker)
        assert np.array_equal(feed.predict(b, sources), expected)


def test_training_and_prediction_never_hold_more_than_a_block_of_clips(corpus, monkeypatch):
    base, rows = corpus
    sizes = []
    read = dataset.Source.read

    def spy(self, idx=None):
        sizes.append(len(self) if idx is None else len(idx))
        return read(self, idx)
    monkeypatch.setattr(dataset.Source, "read", spy)
    monkeypatch.setattr(feed, "BLOCK", 64)
    trained = train_on(rows, name="cnn", model_params=TINY_CNN, cfg={**TRAIN, "epochs": 1}, seed=1, labels=LABELS,
                       features_dir=base / "features", augment_dir=base / "augment", verbose=0)
    n_train = len(trained.train_rows)
    feed.predict(trained.bundle, feed.open_inputs(rows[rows.split == "test"], features_dir=base / "features",
                                                  kinds=["sequence"]))
    assert n_train == 960 and sizes and max(sizes) <= 256, (n_train, max(sizes))


@pytest.mark.parametrize("train_on_val", [False, True])
def test_an_svm_with_train_on_val_trains_on_the_validation_speakers_and_never_on_test(corpus, train_on_val):
    base, rows = corpus
    svm = {"input": "utterance", "C": 1.0, "gamma": "scale", "train_on_val": train_on_val}
    trained = train_on(rows, name="svm", model_params=svm, cfg=TRAIN, seed=0, labels=LABELS,
                       features_dir=base / "features", augment_dir=base / "augment", verbose=0)
    val, test = set(rows.speaker[rows.split == "val"]), set(rows.speaker[rows.split == "test"])
    used = set(trained.bundle.info["train_speakers"])
    assert used.isdisjoint(test) and (val <= used) == train_on_val and used & val == (val if train_on_val else set())
    # one validation speaker per corpus (2 corpora x 60 clips); training: 4 or 5 speakers a corpus,
    # each clip with its augmented copy
    assert trained.n_val == (0 if train_on_val else 120)
    assert len(trained.train_rows) == 2 * 60 * (5 if train_on_val else 4) * 2
    assert ("val_uar" in trained.history) != train_on_val
    assert fit_rows(rows, train_on_val=train_on_val).split.value_counts().to_dict() == (
        {"train": 600, "test": 120} if train_on_val else rows.split.value_counts().to_dict())


def test_a_source_reads_only_the_columns_selected_also_after_subset_and_concat(corpus):
    base, rows = corpus
    whole = dataset.load(rows, features_dir=base / "features", kind="sequence")
    cols = np.array([4, 1])
    src = dataset.open_source(rows, features_dir=base / "features", kind="sequence").select(cols)
    idx = np.array([719, 3, 0, 360])
    assert src.shape == (FRAMES, 2) and np.array_equal(src.read(idx), whole.x[idx][..., cols])
    assert np.array_equal(src.subset(idx).read(), whole.x[idx][..., cols])
    assert np.array_equal(dataset.concat([src.subset(idx[:2]), src.subset(idx[2:])]).read(), whole.x[idx][..., cols])
    with pytest.raises(ValueError, match="different columns"):
        dataset.concat([src, dataset.open_source(rows, features_dir=base / "features", kind="sequence")])
    with pytest.raises(ValueError, match="cannot select"):
        src.select(np.array([0]))


@pytest.mark.parametrize("speaker_norm", [False, True])
def test_a_model_reading_some_frame_features_trains_and_predicts_on_those_columns_only(corpus, tmp_path, speaker_norm):
    """``models.cnn.sequence``: the scaler and the network see the chosen features' columns; the
    bundle picks them out of the full frame features (the cache's, or a file's) when it predicts."""
    import shutil

    from pipeline.extraction import FeatureConfig
    from pipeline.params import ParamsError

    base, rows = corpus
    shutil.copytree(base, tmp_path / "b")
    config = FeatureConfig.from_params({**PARAMS["features"], "sequence": ["zcr", "rms", "pitch", "logmel"],
                                        "n_mels": 1, "n_mfcc": 1}, sr=16000)
    assert config.sequence_names() == ["zcr", "rms", "f0_semitones", "voicing", "logmel_00"]
    for meta in (tmp_path / "b" / "features").rglob("meta.json"):
        meta.write_text(json.dumps({"config": config.to_dict(), "dtype": "float16"}))
    features, cols = tmp_path / "b" / "features", [1, 2, 3]
    kwargs = dict(cfg={**TRAIN, "epochs": 2, "speaker_norm": speaker_norm}, seed=3, labels=LABELS, features_dir=features,
                  augment_dir=tmp_path / "b" / "augment", verbose=0)
    trained = train_on(rows, name="cnn", model_params={**TINY_CNN, "sequence": ["pitch", "rms"]}, **kwargs)
    b = trained.bundle
    assert b.info["sequence_features"] == ["pitch", "rms"] and b.columns.tolist() == cols and len(b.mean) == 3
    train = open_training(training_rows(rows, augment_dir=tmp_path / "b" / "augment", corpora=["ravdess", "savee"]),
                          features_dir=features, kind="sequence").features()
    spk = train.rows.speaker if speaker_norm else None
    x = train.x[..., cols]
    mean, std = B.fit_stats(B.speaker_normalise(x, train.n_frames, spk) if speaker_norm else x, train.n_frames)
    assert np.array_equal(mean, b.mean) and np.array_equal(std, b.std)
    test = rows[rows.split == "test"]
    got = feed.predict(b, feed.open_inputs(test, features_dir=features, kinds=["sequence"]))
    full = dataset.load(test, features_dir=features, kind="sequence")
    assert full.x.shape[-1] == 5                       # the cache holds every column; the bundle picks its own
    z = B.standardise(full.x[..., cols], full.n_frames, mean=mean, std=std,
                      speakers=full.rows.speaker if speaker_norm else None)
    np.testing.assert_allclose(got, np.asarray(b.model(z, training=False)), atol=1e-6)
    B.save(tmp_path / "bundle", model=b.model, labels=b.labels, input_kind=b.input_kind, feature_config=b.feature_config,
           speaker_norm=b.speaker_norm, mean=b.mean, std=b.std, info=b.info)
    assert B.load(tmp_path / "bundle").columns.tolist() == cols
    with pytest.raises(ParamsError, match=r"models\.cnn\.sequence=\['ge2e'\] lists 'ge2e', which features\.sequence "
                                          r"\['zcr', 'rms', 'pitch', 'logmel'\] does not extract; add it"):
        train_on(rows, name="cnn", model_params={**TINY_CNN, "sequence": ["ge2e"]}, **kwargs)
