"""The protocol stage's plan: which clips each fold trains, validates and tests on (the
end-to-end test in test_pipeline.py trains and scores the folds)."""
import numpy as np
import pandas as pd
import pytest

from fakes import PARAMS
from pipeline import params as P, protocol
from pipeline.metrics import prediction_table
from pipeline.params import ParamsError

CLASSES = ["neutral", "happy", "sad", "angry"]
CFG = {"speaker_kfold": {"k": 3, "val_share": 0.15, "train_only": []},
       "cross_corpus": {"train": "all", "test": ["c"], "val_share": 0.15}}


def split_rows():
    """Corpora a (6 speakers), b (4), c (3; no 'sad'), 8 clips per speaker, holdout split."""
    rows = []
    for corpus, n, labels in (("a", 6, CLASSES), ("b", 4, CLASSES), ("c", 3, ["neutral", "happy", "angry"])):
        for s in range(n):
            part = "test" if s == 0 else "val" if s == 1 else "train"
            for j in range(8):
                rows.append({"clip_id": f"{corpus}:{s}_{j}", "corpus": corpus, "speaker": f"{corpus}:{s}",
                             "gender": ("female", "male")[s % 2], "label": labels[j % len(labels)], "split": part})
    return pd.DataFrame(rows)


def test_holdout_is_the_split_as_is():
    rows = split_rows()
    (fold,) = protocol.plan(rows, protocol="holdout", cfg=CFG, classes=CLASSES, seed=0)
    assert fold.name == "holdout" and fold.labels == CLASSES
    pd.testing.assert_frame_equal(fold.rows, rows)


@pytest.mark.parametrize("k, n_folds", [(3, 3), (2, 2), ("loso", 6)])
def test_speaker_kfold_tests_every_speaker_once_and_keeps_train_val_test_disjoint(k, n_folds):
    rows = split_rows()
    folds = protocol.plan(rows, protocol="speaker_kfold", cfg={**CFG, "speaker_kfold": {**CFG["speaker_kfold"], "k": k}},
                          classes=CLASSES, seed=0)
    assert [f.name for f in folds] == [f"fold{i}" for i in range(n_folds)]
    tested = [s for f in folds for s in f.rows.speaker[f.rows.split == "test"].unique()]
    assert sorted(tested) == sorted(rows.speaker.unique())  # each speaker tested exactly once
    for f in folds:
        assert len(f.rows) == len(rows) and f.rows.groupby("speaker").split.nunique().max() == 1
        assert (f.rows.split == "val").any() and (f.rows.split == "train").any()


def test_cross_corpus_one_run_per_test_corpus_over_shared_classes():
    rows = split_rows()
    cfg = {**CFG, "cross_corpus": {"train": ["a", "b", "c"], "test": ["c", "b"], "val_share": 0.15}}
    to_c, to_b = protocol.plan(rows, protocol="cross_corpus", cfg=cfg, classes=CLASSES, seed=0)
    assert to_c.name == "to_c" and to_c.labels == ["neutral", "happy", "angry"]  # c has no 'sad'
    assert set(to_c.rows.label) == set(to_c.labels)
    assert set(to_c.rows.corpus[to_c.rows.split == "test"]) == {"c"}
    assert set(to_c.rows.corpus[to_c.rows.split != "test"]) == {"a", "b"}  # the test corpus left out of train
    assert to_b.labels == CLASSES and set(to_b.rows.corpus[to_b.rows.split != "test"]) == {"a", "c"}


@pytest.mark.parametrize("name, cfg, match", [
    ("bogus", CFG, "evaluate.protocol='bogus' is not valid"),
    ("speaker_kfold", {**CFG, "speaker_kfold": {"k": 1}}, r"evaluate.speaker_kfold: k=1 must be an integer >= 2 or 'loso'"),
    ("cross_corpus", {**CFG, "cross_corpus": {"train": "all", "test": ["x"]}}, r"must name corpora in the split \['a', 'b', 'c'\]"),
    ("cross_corpus", {**CFG, "cross_corpus": {"train": ["c"], "test": ["c"]}}, "train lists no corpus"),
])
def test_bad_protocol_params_are_refused_naming_the_key(name, cfg, match):
    with pytest.raises(ParamsError, match=match):
        protocol.plan(split_rows(), protocol=name, cfg=cfg, classes=CLASSES, seed=0)


@pytest.mark.parametrize("bad, rule", [
    ([], "must hold at least 1 item"), ([1, 1], "must be null .* or a list of distinct integers"),
    ([1.5], "must be an integer"), ("42", "must be a list"), ([True], "must be an integer"),
])
def test_seeds_must_be_null_or_distinct_integers(bad, rule):
    with pytest.raises(ParamsError, match=rf"params\.yaml: train\.seeds(\[0\])?=.* {rule}"):
        P.section({"train": {**PARAMS["train"], "seeds": bad}}, "train")


def test_seeds_default_to_base_seed():
    train = P.section({"train": {**PARAMS["train"], "seeds": None}}, "train")
    assert protocol.seeds_of(train, base_seed=42) == [42]
    train = P.section({"train": {**PARAMS["train"], "seeds": [1, 2, 3]}}, "train")
    assert protocol.seeds_of(train, base_seed=42) == [1, 2, 3]


def test_holdout_reuse_refuses_predictions_of_another_split(tmp_path):
    rows = split_rows()
    (fold,) = protocol.plan(rows, protocol="holdout", cfg=CFG, classes=CLASSES, seed=0)
    test = rows[rows.split == "test"]
    proba = np.full((len(test), len(CLASSES)), 0.25)
    table = prediction_table(test, proba, labels=CLASSES, columns=("clip_id", "corpus", "speaker", "label"))
    table.to_csv(tmp_path / "cnn.csv", index=False)
    got, log = protocol.reused_holdout(tmp_path / "cnn.csv", fold)
    assert len(got) == len(test) and log["test_speakers"] == 3
    table.iloc[1:].to_csv(tmp_path / "cnn.csv", index=False)
    with pytest.raises(ParamsError, match="does not cover the holdout test clips"):
        protocol.reused_holdout(tmp_path / "cnn.csv", fold)


def test_fusion_runs_average_the_members_predictions_and_refuse_mismatches(tmp_path):
    from pipeline.protocol import Fold, fused_runs

    labels = ["neutral", "sad"]
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"seed": 1, "run": "fold0", "clip_id": [f"c:{i}" for i in range(6)], "corpus": "c",
                         "speaker": "c:1", "label": ["neutral", "sad"] * 3})
    probs = {}
    for m in ("cnn", "svm"):
        p = rng.dirichlet(np.ones(2), 6)
        probs[m] = p
        (tmp_path / m).mkdir()
        base.assign(p_neutral=p[:, 0], p_sad=p[:, 1]).sample(frac=1, random_state=1).to_csv(
            tmp_path / m / "predictions.csv", index=False)
    folds_ = [Fold("fold0", base, labels)]
    tables, logs = fused_runs(["cnn", "svm"], [3.0, 1.0], protocol_out=tmp_path, seeds=[1], fold_list=folds_)
    fused = tables[0].sort_values("clip_id")
    np.testing.assert_allclose(fused[["p_neutral", "p_sad"]], (3 * probs["cnn"] + probs["svm"]) / 4)
    assert logs[0]["members"] == "cnn+svm" and logs[0]["test_clips"] == 6
    with pytest.raises(ParamsError, match="no predictions for fold0 seed 2"):
        fused_runs(["cnn", "svm"], [1, 1], protocol_out=tmp_path, seeds=[2], fold_list=folds_)
    with pytest.raises(ParamsError, match=r"run `dvc repro protocol@cnn_lstm`"):
        fused_runs(["cnn", "cnn_lstm"], [1, 1], protocol_out=tmp_path, seeds=[1], fold_list=folds_)


def test_speaker_balanced_takes_each_corpus_classes_from_the_folds_labelled_speakers():
    rows = split_rows()                  # test speakers a:0, b:0, c:0 with 8 clips each; corpus c has no 'sad'
    fold, = protocol.plan(rows, protocol="holdout", cfg=CFG, classes=CLASSES, seed=0)
    test = rows[rows.split == "test"]
    cols = [f"p_{c}" for c in CLASSES]
    rng = np.random.default_rng(0)
    columns = ("clip_id", "corpus", "speaker", "label")
    table = pd.concat([prediction_table(test, rng.dirichlet(np.ones(len(CLASSES)), len(test)), labels=CLASSES,
                                        columns=columns).assign(seed=seed, run="holdout")
                       for seed in (2, 1)], ignore_index=True)        # two seeds, not in ascending order
    out, s = protocol.balanced_run({"m": table}, [1.0], protocol="holdout", seeds=[2, 1], fold_list=[fold],
                                   labels=CLASSES, min_clips=8)
    assert out.balanced.all() and (out.p_sad[out.corpus == "c"] == 0).all() and (out.p_sad[out.corpus != "c"] > 0).all()
    assert list(zip(out.seed, out.clip_id)) == list(zip(table.seed, table.clip_id))     # rows in the input's order
    for _, g in out.groupby(["seed", "speaker"]):  # each speaker's mean probability is now about even over its classes
        mean = g[cols].mean()
        assert mean[mean > 0].max() - mean[mean > 0].min() < 0.1
    assert list(s["per_seed"]) == ["2", "1"] and (s["unbalanced_speakers"], s["min_clips"]) == (0, 8)
    # under the default 14 clips every test speaker keeps its probabilities, and is counted once per seed
    kept, s = protocol.balanced_run({"m": table}, [1.0], protocol="holdout", seeds=[2, 1], fold_list=[fold],
                                    labels=CLASSES)
    np.testing.assert_allclose(kept[cols], table[cols])
    assert (s["unbalanced_speakers"], s["unbalanced_clips"], s["min_clips"]) == (3, 24, 14)
    assert s["setting"] == "speaker-balanced (transductive)" and s["n"] == 24 and s["seeds"] == [2, 1]

    # cross-corpus: the test corpus has no labelled speaker in the fold, so it takes the fold's (shared) classes;
    # the runs' models lack a class (NaN), which stays NaN
    to_c, to_b = protocol.plan(rows, protocol="cross_corpus", cfg={**CFG, "cross_corpus": {
        "train": "all", "test": ["c", "b"], "val_share": 0.15}}, classes=CLASSES, seed=0)
    parts = []
    for f in (to_c, to_b):
        t = f.rows[f.rows.split == "test"]
        proba = rng.dirichlet(np.ones(len(f.labels)), len(t))
        parts.append(prediction_table(t, proba, labels=f.labels, columns=("clip_id", "corpus", "speaker", "label"))
                     .assign(seed=1, run=f.name))
    table = pd.concat(parts, ignore_index=True).reindex(columns=["seed", "run", "clip_id", "corpus", "speaker", "label",
                                                                 "predicted", *cols])
    out = protocol.speaker_balanced({"m": table}, [1.0], fold_list=[to_c, to_b], labels=CLASSES, min_clips=8)
    assert out.p_sad[out.run == "to_c"].isna().all() and (out.p_sad[out.run == "to_b"] > 0).all()
    assert (out.predicted[out.run == "to_c"] != "sad").all() and out.balanced.all()


def test_fusion_members_predictions_are_only_the_planned_runs(tmp_path):
    base = pd.DataFrame({"seed": [1, 1, 2, 1], "run": ["fold0", "fold9", "fold0", "fold0"],
                         "clip_id": ["c:0", "c:0", "c:0", "c:1"], "corpus": "c", "speaker": "c:1", "label": "sad",
                         "p_sad": 1.0})
    (tmp_path / "cnn").mkdir()
    base.to_csv(tmp_path / "cnn" / "predictions.csv", index=False)
    got = protocol.member_predictions(["cnn"], protocol_out=tmp_path, seeds=[1],
                                      fold_list=[protocol.Fold("fold0", base, ["sad"])])
    assert list(got) == ["cnn"] and got["cnn"].clip_id.tolist() == ["c:0", "c:1"] and (got["cnn"].seed == 1).all()
    with pytest.raises(ParamsError, match=r"fusion member 'svm'; run `dvc repro protocol@svm`"):
        protocol.member_predictions(["svm"], protocol_out=tmp_path, seeds=[1], fold_list=[])
