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
