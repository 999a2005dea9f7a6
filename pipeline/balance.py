"""Speaker-balanced decoding: a transductive output correction for one speaker's clips.

A model's class probabilities for one speaker drift with the voice: a speaker whose every clip
sounds a little angry to the model gets "angry" for many of them. When a speaker's clips are
known to cover a set of classes about evenly (acted corpora: each actor acts the corpus's
emotions about equally often), the speaker's mean probability per class estimates that drift.
:func:`balance_speaker` divides each clip's probabilities by it and renormalises: one step of
prior correction toward an even prior over the speaker's classes, from the unlabelled clips
(transductive, as per-speaker feature normalisation is; report it as its own setting).

The assumption is the setting's price. Classes the speaker cannot show must be named (``classes``:
EMO-DB has no ``surprised``), or balancing pushes clips into them; a speaker who is mostly one
emotion (a call, a meeting) is pushed away from it; and it needs enough clips (:data:`MIN_CLIPS`).
The README ("Speaker-balanced decoding") gives the measured effects and costs;
``benchmarks/balance_robustness.py`` measures the costs from the committed fold predictions.

A fusion is balanced member by member, fused, and balanced again (:func:`balance_fusion`), as
``ser predict --one-speaker --balance`` does with a fusion bundle.

Run: ``python -m pipeline.balance --member cnn=data/protocol/cnn/predictions.csv ...
--metrics out.json`` rescores protocol predictions (``gzip``-ed files too) in this setting.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.bundle import fuse_probabilities

MIN_CLIPS = 14
"""Fewest clips of one speaker :func:`balance_speaker` accepts: on the development folds,
balancing groups of about 7 of a speaker's clips lost 0.014 UAR, of about 10 gained only 0.012
and of about 14 gained 0.042 (``benchmarks/balance_robustness.py``)."""


class BalanceError(ValueError):
    """Too few clips, or inputs that cannot be balanced; the message names the fix."""


def check_clip_count(n_clips: int, *, min_clips: int = MIN_CLIPS) -> None:
    """Raise :class:`BalanceError` for fewer than ``min_clips`` clips of one speaker."""
    if n_clips < min_clips:
        raise BalanceError(f"{n_clips} clip(s) of one speaker: speaker-balanced decoding needs at least {min_clips} "
                           "(fewer gained little or lost on the development folds); give more clips of the speaker, "
                           "or predict without balancing")


def balance_speaker(proba: np.ndarray, *, classes: np.ndarray | None = None, min_clips: int = MIN_CLIPS) -> np.ndarray:
    """One speaker's probabilities divided by their mean per class, rows renormalised.

    Parameters
    ----------
    proba : np.ndarray, shape (n_clips, n_classes)
        Class probabilities of ``n_clips >= min_clips`` clips of one speaker.
    classes : np.ndarray of bool, shape (n_classes,), optional
        The classes the speaker's clips can hold (default: all). The others are set to 0
        before the correction, so no clip is pushed into a class the speaker does not show.
    min_clips : int
        Fewer clips raise :class:`BalanceError`.

    Returns
    -------
    np.ndarray, shape (n_clips, n_classes), float64
        The corrected probabilities; each row sums to 1. A class outside ``classes``, or
        with mean probability 0, is 0. A clip with no probability on any of ``classes``
        gets them in equal shares.
    """
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] == 0:
        raise BalanceError(f"expected (n_clips, n_classes) probabilities, got shape {p.shape}; pass one row per clip")
    check_clip_count(len(p), min_clips=min_clips)
    if not np.isfinite(p).all() or (p < 0).any():
        raise BalanceError("probabilities must be finite and non-negative: pass a model's softmax or "
                           "predict_proba output (0 for a class it lacks, not NaN)")
    keep = np.ones(p.shape[1], bool) if classes is None else np.asarray(classes, dtype=bool)
    if keep.shape != (p.shape[1],) or not keep.any():
        raise BalanceError(f"classes must be {p.shape[1]} booleans with at least one true, got {keep.tolist()}")
    p = np.where(keep, p, 0.0)
    prior = p.mean(axis=0, keepdims=True)
    q = np.divide(p, prior, out=np.zeros_like(p), where=prior > 0)
    total = q.sum(axis=1, keepdims=True)
    even = np.broadcast_to(keep / keep.sum(), q.shape)
    return np.divide(q, total, out=np.array(even), where=total > 0)


def balance_groups(proba: np.ndarray, groups: Sequence, *, classes: np.ndarray | None = None,
                   min_clips: int = MIN_CLIPS, keep_small: bool = False) -> np.ndarray:
    """:func:`balance_speaker` within each group of rows.

    ``groups``: one key per row (the speaker; (seed, fold, speaker) for protocol predictions);
    ``classes``: bool, shape (n_classes,) for every row or (n_rows, n_classes), the same
    within a group (e.g. the classes of the group's corpus); ``keep_small``: a group of fewer
    than ``min_clips`` rows keeps its probabilities (:func:`small_groups` counts them) instead
    of raising :class:`BalanceError`."""
    proba = np.asarray(proba, dtype=np.float64)
    keys = pd.Series(list(groups), dtype=object)
    if len(keys) != len(proba):
        raise BalanceError(f"{len(keys)} group keys for {len(proba)} rows of probabilities; give one key per row")
    mask = np.ones(proba.shape, bool) if classes is None else np.broadcast_to(np.asarray(classes, bool), proba.shape)
    small = small_groups(keys, min_clips=min_clips) if keep_small else np.zeros(len(keys), bool)
    out = np.empty_like(proba)
    for key, idx in keys.groupby(pd.factorize(keys)[0]).indices.items():
        if (mask[idx] != mask[idx[0]]).any():
            raise BalanceError(f"group {keys[idx[0]]!r} has rows with different class sets; give one set per group")
        if small[idx[0]]:
            out[idx] = proba[idx]
            continue
        try:
            out[idx] = balance_speaker(proba[idx], classes=mask[idx[0]], min_clips=min_clips)
        except BalanceError as err:
            raise BalanceError(f"group {keys[idx[0]]!r}: {err}") from None
    return out


def small_groups(groups: Sequence, *, min_clips: int = MIN_CLIPS) -> np.ndarray:
    """bool, one per row: the row's group has fewer than ``min_clips`` rows (left unbalanced
    by ``keep_small``)."""
    keys = pd.Series(pd.factorize(pd.Series(list(groups), dtype=object))[0])
    return (keys.map(keys.value_counts()) < min_clips).to_numpy()


def balance_fusion(members: Sequence[np.ndarray], weights: Sequence[float], groups: Sequence, *,
                   classes: np.ndarray | None = None, min_clips: int = MIN_CLIPS,
                   keep_small: bool = False) -> np.ndarray:
    """Each member balanced per group, their weighted mean, balanced again (shape as a member's);
    a single model (one member) is balanced once. ``classes`` and ``keep_small`` as in
    :func:`balance_groups` (a small group gets the plain weighted mean)."""
    if len(members) != len(weights) or not members:
        raise BalanceError(f"{len(members)} member probability tables for {len(weights)} weights; give one weight each")
    if any(not np.isfinite(w) or w <= 0 for w in weights):
        raise BalanceError(f"fusion weights must be positive numbers, got {list(weights)}")
    kw = dict(classes=classes, min_clips=min_clips, keep_small=keep_small)
    if len(members) == 1:
        return balance_groups(members[0], groups, **kw)
    fused = fuse_probabilities([balance_groups(m, groups, **kw) for m in members], weights)
    return balance_groups(fused, groups, **kw)


def corpus_classes(table: pd.DataFrame, *, labels: Sequence[str]) -> np.ndarray:
    """bool (n_rows, n_classes): for each row, the classes its corpus has: every label that
    occurs in the corpus over the whole table (every fold's test speakers). On the development
    folds this is, in every fold, the set the corpus's training speakers show (the corpus's
    design: EMO-DB has no ``surprised``), not a test speaker's own set (EMO-DB speaker 08 has no
    ``disgust`` and is balanced over it too). A corpus with one speaker in the table would give
    that speaker's own labels, so it is refused."""
    speakers = table.groupby("corpus").speaker.nunique()
    if lone := sorted(speakers.index[speakers < 2]):
        raise BalanceError(f"corpus(es) {lone} have one test speaker in the predictions, so their class set would be "
                           "that speaker's own labels; balance over every class (--all-classes) instead")
    have = {corpus: [c in s for c in labels] for corpus, s in table.groupby("corpus").label.agg(set).items()}
    return np.array([have[corpus] for corpus in table.corpus], dtype=bool).reshape(len(table), len(labels))


def labelled_classes(rows: pd.DataFrame, *, labels: Sequence[str], fold_labels: Sequence[str] | None = None
                     ) -> dict[str, np.ndarray]:
    """``{corpus: bool (n_labels,)}`` for one fold's rows (``split.csv`` columns ``corpus``,
    ``label``, ``split``): the classes the corpus's labelled speakers (``train`` and ``val``)
    show, so no test clip's label enters a test speaker's class set. A corpus with no labelled
    rows in the fold (the test corpus of a cross-corpus fold) gets every one of ``fold_labels``
    (default ``labels``), the classes the fold's model predicts: under ``cross_corpus`` these
    are the classes the training corpora share with the test corpus, a selection that (like
    ``split.classes``, which decides which clips are tested at all) reads the corpus's labels."""
    fold_labels = set(labels if fold_labels is None else fold_labels)
    labelled = rows[rows.split.isin(["train", "val"])].groupby("corpus").label.agg(set)
    return {corpus: np.array([c in fold_labels and (corpus not in labelled or c in labelled[corpus]) for c in labels])
            for corpus in sorted(rows.corpus.unique())}


def rescore(tables: Mapping[str, pd.DataFrame], weights: Sequence[float], *, labels: Sequence[str],
            per_corpus_classes: bool = True, fold_classes: Mapping[tuple[str, str], np.ndarray] | None = None,
            min_clips: int = MIN_CLIPS, keep_small: bool = False) -> pd.DataFrame:
    """Protocol predictions (``seed, run, clip_id, corpus, speaker, label, p_<label>``) of one
    model, or of a fusion's members on the same runs and clips, balanced per (seed, run,
    speaker) over its corpus's classes: ``fold_classes[(run, corpus)]`` when given (the
    protocol stage: :func:`labelled_classes` of each fold), else :func:`corpus_classes`
    (``per_corpus_classes=False``: every label). Returns the first table, rows in its order,
    with ``predicted`` and ``p_<label>`` replaced (NaN where it had NaN: a class the run's model
    lacks) and a ``balanced`` column (False for a speaker left as predicted with ``keep_small``)."""
    cols = [f"p_{c}" for c in labels]
    if not cols:
        raise BalanceError("no classes to balance: the predictions need p_<emotion> columns")
    keyed = {}
    for name, t in tables.items():
        if missing := sorted({"seed", "run", "clip_id", "corpus", "speaker", "label", *cols} - set(t.columns)):
            raise BalanceError(f"predictions of {name!r} lack column(s) {missing}; pass a protocol predictions.csv")
        if t.duplicated(["seed", "run", "clip_id"]).any():
            raise BalanceError(f"predictions of {name!r} repeat a (seed, run, clip_id); pass one protocol run's table")
        keyed[name] = (t.reset_index(drop=True).assign(_row=np.arange(len(t)))
                       .sort_values(["seed", "run", "clip_id"], kind="stable").reset_index(drop=True))
    first_name, first = next(iter(keyed.items()))
    for name, t in keyed.items():
        if not t[["seed", "run", "clip_id"]].equals(first[["seed", "run", "clip_id"]]):
            raise BalanceError(f"{name!r} and {first_name!r} hold different runs or clips; score both with the same "
                               "protocol params")
    groups = list(zip(first.seed, first.run, first.speaker))
    if fold_classes is not None:
        if missing := sorted({(r, c) for r, c in zip(first.run, first.corpus)} - set(fold_classes)):
            raise BalanceError(f"no class set for (run, corpus) {missing}; give one for every fold and corpus tested")
        classes = np.array([fold_classes[r, c] for r, c in zip(first.run, first.corpus)], dtype=bool)
    else:
        classes = corpus_classes(first, labels=labels) if per_corpus_classes else None
    proba = balance_fusion([t[cols].fillna(0.0).to_numpy() for t in keyed.values()], weights, groups,
                           classes=classes, min_clips=min_clips, keep_small=keep_small)
    out = first.drop(columns=[c for c in first.columns if c.startswith("p_")] + ["predicted"], errors="ignore")
    out[cols] = np.where(first[cols].isna(), np.nan, proba)
    out["predicted"] = np.asarray(labels)[proba.argmax(axis=1)]
    out["balanced"] = ~small_groups(groups, min_clips=min_clips) if keep_small else True
    return out.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    from pipeline import folds
    from pipeline.vocab import EMOTIONS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--member", action="append", required=True, metavar="NAME=PREDICTIONS_CSV",
                    help="a model's protocol predictions.csv (repeat for a fusion's members)")
    ap.add_argument("--weights", type=float, nargs="+", help="fusion weights, one per --member (default: equal)")
    ap.add_argument("--all-classes", action="store_true",
                    help="balance every speaker over every class, not only its corpus's (EMO-DB has no surprised)")
    ap.add_argument("--min-clips", type=int, default=MIN_CLIPS, help=f"fewest clips of a test speaker (default {MIN_CLIPS})")
    ap.add_argument("--metrics", type=Path, required=True, help="summary JSON to write (as the protocol stage's)")
    ap.add_argument("--predictions", type=Path, help="also write the balanced predictions here")
    args = ap.parse_args(argv)
    pairs = [m.split("=", 1) for m in args.member]
    if any(len(p) != 2 for p in pairs):
        ap.error("--member takes NAME=PREDICTIONS_CSV")
    weights = args.weights or [1.0] * len(pairs)
    if len(weights) != len(pairs):
        ap.error(f"{len(weights)} --weights for {len(pairs)} --member")
    tables = {}
    for name, path in pairs:
        if not Path(path).is_file():
            ap.error(f"{path}: no such predictions file (the protocol stage writes <evaluate.protocol_out>/<model>/"
                     "predictions.csv)")
        tables[name] = pd.read_csv(path)
    labels = [c for c in EMOTIONS if f"p_{c}" in next(iter(tables.values())).columns]
    try:
        table = rescore(tables, weights, labels=labels, per_corpus_classes=not args.all_classes,
                        min_clips=args.min_clips)
    except BalanceError as err:
        raise SystemExit(f"balance: {err}") from None
    seeds = [int(s) for s in dict.fromkeys(table.seed)]
    summary = {"protocol": "speaker-balanced " + "+".join(tables), "seeds": seeds,
               **folds.summarise(table, labels=labels)}
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(summary, indent=2) + "\n")
    if args.predictions:
        table.to_csv(args.predictions, index=False)
    print(f"speaker-balanced {'+'.join(tables)}: UAR {summary['uar_mean']:.3f} ± {summary['uar_std']:.3f} over "
          f"folds, pooled {summary['uar_pooled']:.3f}; " + ", ".join(
              f"{c} {b['uar_mean']:.3f}" for c, b in summary["per_corpus"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
