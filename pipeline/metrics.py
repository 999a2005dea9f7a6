"""Scores: one definition of every reported number, in numpy.

:func:`uar` is what early stopping watches (``train``); :func:`compute_metrics` is what
``evaluate`` reports and what :func:`pipeline.folds.summarise` averages over folds and
seeds (``protocol``); :func:`prediction_table` is the per-clip table both write. Pure
functions, no I/O. Each number is computed as scikit-learn computes it (the same
operations in the same order, so the same bits: tests/test_train_evaluate.py checks
against ``balanced_accuracy_score``, ``accuracy_score``, ``precision_recall_fscore_support``
and ``roc_auc_score``), without its per-call input checks (a speaker-balanced rescoring of
two members' committed predictions took 4.3 s with them, 1.2 s now, with a faster class
lookup in :mod:`pipeline.balance`) and without importing scikit-learn into the Keras stages.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Counts (k, k): row = true class, column = predicted class."""
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def _ints(y: np.ndarray | Sequence[int]) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or (len(y) and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0)):
        raise ValueError(f"class indices must be a 1-D array of integers >= 0, got {y.dtype} of shape {y.shape}")
    return y.astype(np.int64, copy=False)


def _uar(cm: np.ndarray, present: np.ndarray) -> float:
    return float(np.mean(cm[present, present] / cm[present].sum(axis=1)))


def uar(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted average recall (balanced accuracy) over the classes present in ``y_true``;
    a predicted class absent from ``y_true`` lowers the recall of the true ones, nothing else."""
    y_true, y_pred = _ints(y_true), _ints(y_pred)
    if len(y_true) != len(y_pred) or not len(y_true):
        raise ValueError(f"uar needs as many predictions as labels, at least one: {len(y_true)} and {len(y_pred)}")
    k = int(max(y_true.max(), y_pred.max())) + 1
    return _uar(_confusion(y_true, y_pred, k), np.unique(y_true))


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64, 0 where den is 0 (scikit-learn's ``zero_division=0``)."""
    zero = den == 0
    out = np.asarray(num, dtype=np.float64) / np.where(zero, 1, den).astype(np.float64)
    out[zero] = 0.0
    return out


def _prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix."""
    tp, pred, true = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    f1 = _divide(2.0 * tp.astype(np.float64), true.astype(np.float64) + pred.astype(np.float64))
    return _divide(tp, pred), _divide(tp, true), f1, true


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the boolean ``positive`` (both classes
    present), by the trapezoid over the curve's corners, as scikit-learn's ``roc_curve``."""
    order = np.argsort(score, kind="mergesort")[::-1]
    score, positive = score[order], np.asarray(positive)[order].astype(np.float64)
    ends = np.r_[np.nonzero(np.diff(score))[0], len(score) - 1]   # the last clip of each distinct score
    tps = np.cumsum(positive)[ends]
    fps = 1 + ends.astype(np.float64) - tps
    if len(fps) > 2:   # drop points collinear with their neighbours
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps = fps[keep], tps[keep]
    fpr, tpr = np.r_[0.0, fps] / fps[-1], np.r_[0.0, tps] / tps[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def compute_metrics(y_true: np.ndarray, proba: np.ndarray, *, labels: Sequence[str], corpus: Sequence[str]) -> dict:
    """Metrics with stable keys from integer labels (n,) and probabilities (n, n_classes).

    ``uar`` is the unweighted average recall (balanced accuracy) over the classes present
    in ``y_true``; ``roc_auc`` is the mean one-vs-rest AUC over classes present;
    ``per_class`` holds precision, recall, F1 and support of every label, ``per_corpus``
    the UAR, accuracy, macro-F1, size and per-class recall of each corpus.
    """
    y_true, k = _ints(y_true), len(labels)
    y_pred = np.asarray(proba).argmax(axis=1)
    if len(y_true) != len(y_pred) or not len(y_true) or y_true.max() >= k:
        raise ValueError(f"{len(y_true)} labels (each below {k}) for {len(y_pred)} rows of probabilities")
    present = np.unique(y_true)
    cm = _confusion(y_true, y_pred, k)
    prec, rec, f1, sup = _prf(cm)
    aucs = [roc_auc(y_true == c, proba[:, c]) for c in present] if len(present) > 1 else [float("nan")]
    corpus = np.asarray(corpus)
    out = {
        "accuracy": float(np.mean(y_true == y_pred)),
        "uar": _uar(cm, present),
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
        cm_c = _confusion(y_true[m], y_pred[m], k)
        _, rec_c, f1_c, _ = _prf(cm_c)
        out["per_corpus"][c] = {"uar": _uar(cm_c, here),
                                "accuracy": float(np.mean(y_true[m] == y_pred[m])),
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
