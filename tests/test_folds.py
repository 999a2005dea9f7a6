"""Evaluation protocols: speaker folds / LOSO, cross-corpus splits, fold summaries."""
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from pipeline.folds import cross_corpus, speaker_folds, summarise
from pipeline.speakers import check_disjoint

CLASSES = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
CORPORA = {"ravdess": 8, "cremad": 12, "emodb": 10, "savee": 4, "tess": 2}


def fake_rows(n_speakers: dict[str, int], *, labels: dict[str, list[str]] | None = None,
              clips: int = 2) -> pd.DataFrame:
    """split.csv-shaped rows: corpora with the given speaker counts, alternating sex."""
    labels = labels or {}
    rows = []
    for corpus, n in n_speakers.items():
        for s in range(n):
            for label in labels.get(corpus, CLASSES):
                for k in range(clips):
                    rows.append({"clip_id": f"{corpus}:{s}-{label}-{k}", "corpus": corpus,
                                 "speaker": f"{corpus}:{s:02d}", "gender": "male" if s % 2 else "female",
                                 "emotion": label, "label": label, "split": "train"})
    return pd.DataFrame(rows)


def speakers_in(fold: pd.DataFrame, part: str, corpus: str | None = None) -> set[str]:
    sel = fold[(fold.split == part) & ((fold.corpus == corpus) if corpus else True)]
    return set(sel.speaker)


# ---------------------------------------------------------------- speaker folds

@pytest.mark.parametrize("k", [2, 3, 5, "loso"])
def test_folds_speaker_disjoint_every_row_once_every_speaker_tested_once(k):
    rows = fake_rows(CORPORA)
    folds = speaker_folds(rows, k=k, seed=42, val_share=0.15)
    assert len(folds) == (12 if k == "loso" else k)
    for i, fold in enumerate(folds):
        check_disjoint(fold)
        assert len(fold) == len(rows) and fold.clip_id.is_unique and set(fold.clip_id) == set(rows.clip_id)
        assert fold.split.isin(["train", "val", "test"]).all() and (fold.fold == i).all()
        assert set(fold.corpus[fold.split == "train"]) == set(CORPORA)  # every corpus keeps training speakers
    tested = Counter(s for fold in folds for s in speakers_in(fold, "test"))
    assert set(tested) == set(rows.speaker) and set(tested.values()) == {1}


def test_same_seed_same_folds_other_seed_differs():
    rows = fake_rows({"ravdess": 8, "cremad": 12})
    a, b, c = (speaker_folds(rows, k=4, seed=s, val_share=0.15) for s in (1, 1, 2))
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y)
    assert any(not x.split.equals(z.split) for x, z in zip(a, c, strict=True))


def test_adding_a_corpus_leaves_other_corpora_folds_unchanged():
    a = speaker_folds(fake_rows({"cremad": 12}), k=3, seed=7, val_share=0.15)
    b = speaker_folds(fake_rows({"cremad": 12, "emodb": 10}), k=3, seed=7, val_share=0.15)
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y[y.corpus == "cremad"].reset_index(drop=True))


@pytest.mark.parametrize("n", [2, 5, 9])
def test_loso_one_fold_per_speaker(n):
    rows = fake_rows({"emodb": n})
    folds = speaker_folds(rows, k="loso", seed=0, val_share=0.15)
    assert len(folds) == n
    assert all(len(speakers_in(f, "test")) == 1 for f in folds)
    big_k = speaker_folds(rows, k=n + 5, seed=0, val_share=0.15)  # k >= speakers is LOSO too
    for x, y in zip(folds, big_k, strict=True):
        pd.testing.assert_frame_equal(x, y)


def test_loso_small_corpora_tested_in_first_folds_then_train_only():
    folds = speaker_folds(fake_rows({"cremad": 12, "savee": 4, "tess": 2}), k="loso", seed=3, val_share=0.15)
    assert len(folds) == 12
    for i, fold in enumerate(folds):
        assert len(speakers_in(fold, "test", "cremad")) == 1
        assert len(speakers_in(fold, "test", "savee")) == (1 if i < 4 else 0)
        assert len(speakers_in(fold, "test", "tess")) == (1 if i < 2 else 0)
        assert speakers_in(fold, "train", "tess")  # tess always keeps a training speaker


@pytest.mark.parametrize("k", [2, 3])  # k=2 on alternating sexes defeats naive round-robin dealing
def test_fold_test_sets_mix_sexes_in_proportion(k):
    rows = fake_rows({"cremad": 12, "emodb": 10})
    # make emodb unbalanced: 7 female, 3 male
    rows.loc[rows.speaker.isin(["emodb:01", "emodb:03"]), "gender"] = "female"
    sexes = rows.groupby("speaker").gender.first()
    for fold in speaker_folds(rows, k=k, seed=11, val_share=0.15):
        for corpus in ("cremad", "emodb"):
            got = Counter(sexes[s] for s in speakers_in(fold, "test", corpus))
            total = Counter(sexes[sexes.index.str.startswith(corpus)])
            for sex, n in total.items():  # each sex split as evenly as k allows
                assert n // k <= got[sex] <= -(-n // k)
            assert set(got) == {"female", "male"}  # both corpora have >= k speakers of each sex


def test_validation_share_rule():
    rows = fake_rows(CORPORA)
    for fold in speaker_folds(rows, k=4, seed=5, val_share=0.15):
        for corpus, n in CORPORA.items():
            non_test = n - len(speakers_in(fold, "test", corpus))
            expected = 0 if non_test < 3 else min(non_test - 2, max(1, int(np.floor(non_test * 0.15 + 0.5))))
            assert len(speakers_in(fold, "val", corpus)) == expected
    assert all("val" not in set(f.split) for f in speaker_folds(rows, k=4, seed=5, val_share=0))


def test_single_speaker_corpus_refused_unless_train_only():
    rows = fake_rows({"cremad": 6, "solo": 1})
    with pytest.raises(ValueError, match=r"corpus 'solo' has a single speaker .* train_only=\['solo'\]"):
        speaker_folds(rows, k=3, seed=0, val_share=0.15)
    folds = speaker_folds(rows, k=3, seed=0, val_share=0.15, train_only=["solo"])
    assert all((f.split[f.corpus == "solo"] == "train").all() for f in folds)
    with pytest.raises(ValueError, match="leave at least one to test on"):
        speaker_folds(rows, k=3, seed=0, val_share=0.15, train_only=["solo", "cremad"])


@pytest.mark.parametrize("k,match", [(1, r"k=1 must be an integer >= 2 or .loso."), ("kfold", "or 'loso'"),
                                     (True, "or 'loso'")])
def test_bad_k_is_refused(k, match):
    with pytest.raises(ValueError, match=match):
        speaker_folds(fake_rows({"cremad": 4}), k=k, seed=0, val_share=0.15)


def test_bad_val_share_and_missing_columns_are_refused():
    rows = fake_rows({"cremad": 4})
    with pytest.raises(ValueError, match=r"val_share=1.0 must be in \[0, 1\)"):
        speaker_folds(rows, k=2, seed=0, val_share=1.0)
    with pytest.raises(ValueError, match=r"lack column\(s\) \['gender'\]"):
        speaker_folds(rows.drop(columns="gender"), k=2, seed=0, val_share=0.15)


# ---------------------------------------------------------------- cross-corpus

def test_cross_corpus_keeps_shared_classes_in_vocabulary_order():
    labels = {"ravdess": ["sad", "surprised", "neutral", "angry"], "cremad": ["angry", "disgust", "neutral"],
              "emodb": ["angry", "neutral", "sad", "boredom", "disgust"]}
    rows = fake_rows({"ravdess": 8, "cremad": 12, "emodb": 10, "tess": 2}, labels=labels)
    out, classes = cross_corpus(rows, train=["ravdess", "cremad"], test="emodb", seed=1, val_share=0.15)
    assert classes == ["neutral", "sad", "angry", "disgust"]  # surprised/boredom on one side only
    assert set(out.label) == set(classes)
    check_disjoint(out)
    assert set(out.corpus[out.split == "test"]) == {"emodb"}
    assert set(out.corpus[out.split != "test"]) == {"ravdess", "cremad"}  # tess dropped
    assert (out.split[out.corpus == "emodb"] == "test").all()
    assert out.clip_id.is_unique
    val = out[out.split == "val"].groupby("corpus").speaker.nunique().to_dict()
    assert val == {"ravdess": 1, "cremad": 2}  # round(8 * .15) = 1, round(12 * .15) = 2
    again, _ = cross_corpus(rows, train=["ravdess", "cremad"], test="emodb", seed=1, val_share=0.15)
    pd.testing.assert_frame_equal(out, again)


def test_cross_corpus_refuses_overlap_and_unknown_corpora():
    rows = fake_rows({"ravdess": 4, "emodb": 4})
    with pytest.raises(ValueError, match=r"'emodb' is both a training corpus \(train=\['ravdess', 'emodb'\]\)"):
        cross_corpus(rows, train=["ravdess", "emodb"], test="emodb", seed=0, val_share=0.15)
    with pytest.raises(ValueError, match=r"corpus\(es\) \['savee'\] have no rows"):
        cross_corpus(rows, train=["savee"], test="emodb", seed=0, val_share=0.15)


def test_cross_corpus_needs_two_shared_classes():
    rows = fake_rows({"a": 3, "b": 3}, labels={"a": ["happy", "sad"], "b": ["sad", "angry"]})
    with pytest.raises(ValueError, match=r"share 1 class\(es\) \['sad'\]"):
        cross_corpus(rows, train=["a"], test="b", seed=0, val_share=0.15)


# ---------------------------------------------------------------- summaries

def predictions_table(seeds=(1, 2), runs=("fold0", "fold1", "fold2"), labels=("neutral", "happy", "sad"), n=24):
    rng = np.random.default_rng(0)
    parts = []
    for seed in seeds:
        for i, run in enumerate(runs):
            corpus = np.where(np.arange(n) < n // 2 + 4 * i, "a", "b")  # fold sizes per corpus differ
            y = rng.integers(0, len(labels), n)
            proba = rng.dirichlet(np.ones(len(labels)), n)
            proba[np.arange(n), y] += rng.uniform(0, 0.6 + 0.1 * seed, n)  # better than chance, seed-dependent
            parts.append(pd.DataFrame({"seed": seed, "run": run, "corpus": corpus, "speaker": "x",
                                       "label": np.asarray(labels)[y],
                                       **{f"p_{c}": proba[:, j] for j, c in enumerate(labels)}}))
    return pd.concat(parts, ignore_index=True), list(labels)


def uar_of(g, labels):
    return balanced_accuracy_score(g.label.map({c: i for i, c in enumerate(labels)}),
                                   g[[f"p_{c}" for c in labels]].to_numpy().argmax(axis=1))


def test_summarise_fold_mean_sample_std_pooled_and_seed_spread():
    table, labels = predictions_table()
    s = summarise(table, labels=labels)
    per_fold = [np.mean([uar_of(g[g.seed == seed], labels) for seed in (1, 2)]) for _, g in table.groupby("run")]
    assert s["n_folds"] == 3 and s["n_seeds"] == 2 and s["n"] == 72
    assert s["uar_mean"] == pytest.approx(np.mean(per_fold)) and s["uar_std"] == pytest.approx(np.std(per_fold, ddof=1))
    pooled = [uar_of(table[table.seed == seed], labels) for seed in (1, 2)]
    assert s["uar_pooled"] == pytest.approx(np.mean(pooled))
    assert s["uar_pooled_seed_std"] == pytest.approx(np.std(pooled, ddof=1))
    assert s["per_seed"]["2"]["uar_pooled"] == pytest.approx(pooled[1])
    a = [np.mean([uar_of(g[(g.seed == seed) & (g.corpus == "a")], labels) for seed in (1, 2)])
         for _, g in table.groupby("run")]
    assert s["per_corpus"]["a"]["uar_mean"] == pytest.approx(np.mean(a))
    assert s["per_corpus"]["a"]["uar_std"] == pytest.approx(np.std(a, ddof=1))
    assert s["per_corpus"]["a"]["n"] == 12 + 16 + 20 and s["per_corpus"]["a"]["n_folds"] == 3
    assert s["per_corpus"]["b"]["n_classes"] == 3
    assert s["per_fold"]["fold1"]["n"] == 24
    json.dumps(s, allow_nan=False)  # numbers only: valid JSON for metrics/<model>_protocol.json


def test_summarise_single_fold_single_seed_has_zero_spread():
    table, labels = predictions_table(seeds=(7,), runs=("holdout",))
    s = summarise(table, labels=labels)
    assert s["uar_std"] == 0.0 and s["uar_pooled_seed_std"] == 0.0
    assert s["uar_mean"] == pytest.approx(s["uar_pooled"]) == pytest.approx(uar_of(table, labels))


def test_summarise_runs_over_different_class_sets():
    """Cross-corpus runs predict different shared classes; missing columns count as 0."""
    table, labels = predictions_table(seeds=(1,), runs=("to_a", "to_b"))
    table.loc[table.run == "to_b", "p_sad"] = np.nan
    table = table[~((table.run == "to_b") & (table.label == "sad"))]
    s = summarise(table, labels=labels)
    to_b = table[table.run == "to_b"]
    assert s["per_fold"]["to_b"]["uar"] == pytest.approx(uar_of(to_b.fillna(0.0), labels))


def test_summarise_refuses_missing_columns_and_uneven_seeds():
    table, labels = predictions_table()
    with pytest.raises(ValueError, match=r"lack column\(s\) \['p_sad'\]"):
        summarise(table.drop(columns="p_sad"), labels=labels)
    with pytest.raises(ValueError, match=r"seed 2 lacks fold\(s\) \['fold1'\]"):
        summarise(table[~((table.seed == 2) & (table.run == "fold1"))], labels=labels)
    with pytest.raises(ValueError, match="predictions is empty"):
        summarise(table.iloc[:0], labels=labels)


def test_summarise_gives_pooled_recall_per_class_overall_and_per_corpus():
    table, labels = predictions_table()
    s = summarise(table, labels=labels)
    predicted = np.asarray(labels)[table[[f"p_{c}" for c in labels]].to_numpy().argmax(axis=1)]
    table = table.assign(predicted=predicted)

    def recall(g, c):
        return np.mean([np.mean(h.predicted[h.label == c] == c) for _, h in g.groupby("seed")])

    for c in labels:
        assert s["recall"][c] == pytest.approx(recall(table, c))
        assert s["per_corpus"]["b"]["recall"][c] == pytest.approx(recall(table[table.corpus == "b"], c))
    assert 0 < s["per_corpus"]["a"]["macro_f1_pooled"] < 1
