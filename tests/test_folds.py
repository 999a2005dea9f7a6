"""Evaluation protocols: speaker folds / LOSO, cross-corpus splits, fold summaries."""
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from pipeline.folds import cross_corpus, pooled_metrics, speaker_folds, summarise
from pipeline.split import check_disjoint

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
    folds = speaker_folds(rows, k=k, seed=42)
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
    a, b, c = (speaker_folds(rows, k=4, seed=s) for s in (1, 1, 2))
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)
    assert any(not x.split.equals(z.split) for x, z in zip(a, c))


def test_adding_a_corpus_leaves_other_corpora_folds_unchanged():
    a = speaker_folds(fake_rows({"cremad": 12}), k=3, seed=7)
    b = speaker_folds(fake_rows({"cremad": 12, "emodb": 10}), k=3, seed=7)
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y[y.corpus == "cremad"].reset_index(drop=True))


@pytest.mark.parametrize("n", [2, 5, 9])
def test_loso_one_fold_per_speaker(n):
    rows = fake_rows({"emodb": n})
    folds = speaker_folds(rows, k="loso", seed=0)
    assert len(folds) == n
    assert all(len(speakers_in(f, "test")) == 1 for f in folds)
    big_k = speaker_folds(rows, k=n + 5, seed=0)  # k >= speakers is LOSO too
    for x, y in zip(folds, big_k):
        pd.testing.assert_frame_equal(x, y)


def test_loso_small_corpora_tested_in_first_folds_then_train_only():
    folds = speaker_folds(fake_rows({"cremad": 12, "savee": 4, "tess": 2}), k="loso", seed=3)
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
    for fold in speaker_folds(rows, k=k, seed=11):
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
        speaker_folds(rows, k=3, seed=0)
    folds = speaker_folds(rows, k=3, seed=0, train_only=["solo"])
    assert all((f.split[f.corpus == "solo"] == "train").all() for f in folds)
    with pytest.raises(ValueError, match="leave at least one to test on"):
        speaker_folds(rows, k=3, seed=0, train_only=["solo", "cremad"])


@pytest.mark.parametrize("k,match", [(1, r"k=1: speaker folds need k >= 2"), ("kfold", "or 'loso'"),
                                     (True, "or 'loso'")])
def test_bad_k_is_refused(k, match):
    with pytest.raises(ValueError, match=match):
        speaker_folds(fake_rows({"cremad": 4}), k=k, seed=0)


def test_bad_val_share_and_missing_columns_are_refused():
    rows = fake_rows({"cremad": 4})
    with pytest.raises(ValueError, match=r"val_share=1.0 must be in \[0, 1\)"):
        speaker_folds(rows, k=2, seed=0, val_share=1.0)
    with pytest.raises(ValueError, match=r"lack column\(s\) \['gender'\]"):
        speaker_folds(rows.drop(columns="gender"), k=2, seed=0)


# ---------------------------------------------------------------- cross-corpus

def test_cross_corpus_keeps_shared_classes_in_vocabulary_order():
    labels = {"ravdess": ["sad", "surprised", "neutral", "angry"], "cremad": ["angry", "disgust", "neutral"],
              "emodb": ["angry", "neutral", "sad", "boredom", "disgust"]}
    rows = fake_rows({"ravdess": 8, "cremad": 12, "emodb": 10, "tess": 2}, labels=labels)
    out, classes = cross_corpus(rows, train=["ravdess", "cremad"], test="emodb", seed=1)
    assert classes == ["neutral", "sad", "angry", "disgust"]  # surprised/boredom on one side only
    assert set(out.label) == set(classes)
    check_disjoint(out)
    assert set(out.corpus[out.split == "test"]) == {"emodb"}
    assert set(out.corpus[out.split != "test"]) == {"ravdess", "cremad"}  # tess dropped
    assert (out.split[out.corpus == "emodb"] == "test").all()
    assert out.clip_id.is_unique
    val = out[out.split == "val"].groupby("corpus").speaker.nunique().to_dict()
    assert val == {"ravdess": 1, "cremad": 2}  # round(8 * .15) = 1, round(12 * .15) = 2
    again, _ = cross_corpus(rows, train=["ravdess", "cremad"], test="emodb", seed=1)
    pd.testing.assert_frame_equal(out, again)


def test_cross_corpus_refuses_overlap_and_unknown_corpora():
    rows = fake_rows({"ravdess": 4, "emodb": 4})
    with pytest.raises(ValueError, match=r"'emodb' is both a training corpus \(train=\['ravdess', 'emodb'\]\)"):
        cross_corpus(rows, train=["ravdess", "emodb"], test="emodb", seed=0)
    with pytest.raises(ValueError, match=r"corpus\(es\) \['savee'\] have no rows"):
        cross_corpus(rows, train=["savee"], test="emodb", seed=0)


def test_cross_corpus_needs_two_shared_classes():
    rows = fake_rows({"a": 3, "b": 3}, labels={"a": ["happy", "sad"], "b": ["sad", "angry"]})
    with pytest.raises(ValueError, match=r"share 1 class\(es\) \['sad'\]"):
        cross_corpus(rows, train=["a"], test="b", seed=0)


# ---------------------------------------------------------------- summaries

def fold_metrics(uar, accuracy, macro_f1, n, per_corpus):
    return {"uar": uar, "accuracy": accuracy, "macro_f1": macro_f1, "roc_auc": 0.5, "n": n,
            "per_class": {}, "per_corpus": per_corpus}


def test_summarise_mean_and_sample_std():
    per_fold = [
        fold_metrics(0.5, 0.6, 0.4, 10, {"a": {"uar": 0.5, "accuracy": 0.6, "n": 10}}),
        fold_metrics(0.7, 0.6, 0.5, 20, {"a": {"uar": 0.6, "accuracy": 0.5, "n": 12},
                                         "b": {"uar": 0.8, "accuracy": 0.7, "n": 8}}),
        fold_metrics(0.9, 0.9, 0.6, 30, {"a": {"uar": 0.7, "accuracy": 0.4, "n": 30}}),
    ]
    s = summarise(per_fold)
    assert s["n_folds"] == 3 and s["n"] == 60
    assert s["uar_mean"] == pytest.approx(0.7) and s["uar_std"] == pytest.approx(0.2)
    assert s["accuracy_mean"] == pytest.approx(0.7) and s["accuracy_std"] == pytest.approx(np.sqrt(0.03))
    assert s["macro_f1_mean"] == pytest.approx(0.5) and s["macro_f1_std"] == pytest.approx(0.1)
    assert s["per_corpus"]["a"] == pytest.approx({"uar_mean": 0.6, "uar_std": 0.1, "accuracy_mean": 0.5,
                                                  "accuracy_std": 0.1, "n_folds": 3, "n": 52})
    assert s["per_corpus"]["b"] == {"uar_mean": 0.8, "uar_std": 0.0, "accuracy_mean": 0.7,
                                    "accuracy_std": 0.0, "n_folds": 1, "n": 8}
    assert "pooled" not in s


def test_summarise_refuses_empty_and_incomplete_input():
    with pytest.raises(ValueError, match="per_fold is empty"):
        summarise([])
    with pytest.raises(ValueError, match=r"per_fold\[1\] lacks \['macro_f1'\]"):
        summarise([fold_metrics(0.5, 0.5, 0.5, 1, {}), {"uar": 0.5, "accuracy": 0.5, "n": 1}])


def test_pooled_uar_is_balanced_accuracy_of_the_concatenation():
    labels = ["neutral", "happy", "sad"]
    rng = np.random.default_rng(0)
    sizes = [7, 15, 30]
    y = [rng.integers(0, 3, n) for n in sizes]
    proba = [rng.dirichlet(np.ones(3), n) for n in sizes]
    corpus = [rng.choice(["a", "b"], n) for n in sizes]
    pooled = pooled_metrics(y, proba, corpus_list=corpus, labels=labels)
    y_all, pred_all = np.concatenate(y), np.concatenate(proba).argmax(axis=1)
    assert pooled["uar"] == pytest.approx(balanced_accuracy_score(y_all, pred_all))
    assert pooled["n"] == sum(sizes) and set(pooled["per_corpus"]) == {"a", "b"}
    summary = summarise([pooled, pooled], pooled=pooled)
    assert summary["pooled"]["uar"] == pooled["uar"]
    json.dumps(summary, allow_nan=False)  # numbers only, valid JSON for metrics/<model>_<protocol>.json
    with pytest.raises(ValueError, match=r"fold 1: .* expected proba shape \(15, 3\)"):
        pooled_metrics(y, [proba[0], proba[1][:, :2], proba[2]], corpus_list=corpus, labels=labels)
