"""Scores: one definition of every reported number, from scikit-learn.

:func:`uar` is what early stopping watches (``train``); :func:`compute_metrics` is what
``evaluate`` reports and what :func:`pipeline.folds.summarise` averages over folds and
seeds (``protocol``); :func:`prediction_table` is the per-clip table both write. Pure
functions, no I/O.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_recall_fscore_support, roc_auc_score


def uar(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted average recall (balanced accuracy) over the classes present in ``y_true``;
    a predicted class absent from ``y_true`` lowers the recall of the true ones, nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y_true, y_pred))


def compute_metrics(y_true: np.ndarray, proba: np.ndarray, *, labels: Sequence[str], corpus: Sequence[str]) -> dict:
    """Metrics with stable keys from integer labels (n,) and probabilities (n, n_classes).

    ``uar`` is the unweighted average recall (balanced accuracy) over the classes present
    in ``y_true``; ``roc_auc`` is the mean one-vs-rest AUC over classes present;
    ``per_class`` holds precision, recall, F1 and support of every label, ``per_corpus``
    the UAR, accuracy, macro-F1, size and per-class recall of each corpus.
    """
    y_pred = proba.argmax(axis=1)
    present = np.unique(y_true)
    prec, rec, f1, sup = precision_recall_fscore_support(y_true, y_pred, labels=np.arange(len(labels)), zero_division=0)
    aucs = [roc_auc_score(y_true == c, proba[:, c]) for c in present] if len(present) > 1 else [float("nan")]
    corpus = np.asarray(corpus)
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "uar": uar(y_true, y_pred),
        "macro_f1": float(np.mean(f1[present])),
        "roc_auc": float(np.mean(aucs)),
        "n": int(len(y_true)),
        "per_class": {label: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(sup[i])}
                      for i, label in enumerate(labels)},
        "per_corpus": {},
    }
    for c in sorted(set(corpus)):
        m = corpus == c
        here = np.unique(y_true[m])
        _, rec_c, f1_c, _ = precision_recall_fscore_support(y_true[m], y_pred[m], labels=np.arange(len(labels)),
                                                            zero_division=0)
        out["per_corpus"][c] = {"uar": uar(y_true[m], y_pred[m]),
                                "accuracy": float(accuracy_score(y_true[m], y_pred[m])),
                                "macro_f1": float(np.mean(f1_c[here])), "n": int(m.sum()),
                                "recall": {labels[i]: float(rec_c[i]) for i in here}}
    return out


def prediction_table(rows: pd.DataFrame, proba: np.ndarray, *, labels: Sequence[str],
                     columns: Sequence[str] = ("clip_id", "path", "corpus", "speaker", "label")) -> pd.DataFrame:
    """``columns`` of ``rows``, the predicted label and ``p_<label>`` per class, one row per clip."""
    table = rows[list(columns)].reset_index(drop=True)
    table["predicted"] = [labels[i] for i in proba.argmax(axis=1)]
    for i, c in enumerate(labels):
        table[f"p_{c}"] = proba[:, i]
    return table
