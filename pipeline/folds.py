"""Evaluation protocols: speaker k-fold / LOSO folds, cross-corpus splits, fold summaries.

Pure functions on rows shaped like ``data/interim/split.csv`` (columns ``clip_id``,
``corpus``, ``speaker``, ``gender``, ``label``, ...); no I/O. A stage that runs a protocol
trains one model per fold and seed (:mod:`pipeline.protocol`) and writes :func:`summarise`
of every run's test predictions to ``metrics/<model>_protocol.json``.

Rules
-----
- **Folds are per corpus.** Each corpus's speakers are shuffled per sex with
  :func:`pipeline.speakers.corpus_rng` (as in :mod:`pipeline.split`), the sex
  groups are concatenated and dealt round-robin into ``k`` groups, so every group holds
  ``floor`` or ``ceil`` of ``n_sex / k`` speakers of each sex (mixed sexes whenever a corpus
  has at least ``k`` speakers of each). Fold ``i`` tests group ``i`` of every corpus; every
  speaker is tested exactly once over the folds.
- **LOSO.** ``k="loso"``, or any ``k`` at least the largest corpus's speaker count, gives
  one fold per speaker of the largest corpus.
- **Small corpora.** A corpus with ``n < k`` speakers is tested one speaker per fold in
  folds ``0 .. n-1`` and is training (and validation) data only in the other folds. A corpus
  with a single speaker is refused (its speaker could only ever be tested with no speaker of
  that corpus in training) unless it is listed in ``train_only``, which puts every speaker
  of the corpus in ``train`` in every fold.
- **Validation.** In each fold and for each corpus, ``round(n * val_share)`` of the ``n``
  non-test speakers (at least 1, and leaving at least 2 for training) go to ``val``, drawn
  in :func:`pipeline.speakers.interleave` order from the corpus's generator; a corpus with fewer than 3 non-test speakers
  gives no validation speaker. :func:`cross_corpus` applies the same rule to each training
  corpus.
- **Summaries.** Means over folds, and the *sample* standard deviation (``ddof=1``); the std
  is 0.0 when a single fold contributes (``n_folds`` says so), keeping the JSON numeric.
  The pooled UAR scores all folds' test predictions at once (every speaker once).
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import pandas as pd

from pipeline.metrics import compute_metrics
from pipeline.speakers import check_val_share, corpus_rng, pick_val, shuffled_by_sex, speaker_sexes
from pipeline.vocab import EMOTIONS

SUMMARY_METRICS: tuple[str, ...] = ("uar", "accuracy", "macro_f1")
"""Per-fold metrics :func:`summarise` averages (keys of :func:`compute_metrics`)."""


def speaker_folds(rows: pd.DataFrame, *, k: int | Literal["loso"], seed: int, val_share: float,
                  train_only: Sequence[str] = ()) -> list[pd.DataFrame]:
    """Speaker-independent k-fold (or leave-one-speaker-out) folds, per corpus.

    Parameters
    ----------
    rows : pd.DataFrame
        One row per clip, with ``corpus``, ``speaker`` and ``gender`` columns (any ``split``
        column is replaced).
    k : int >= 2 or "loso"
        Number of folds; ``"loso"`` or a ``k`` at least the largest corpus's speaker count
        gives one fold per speaker of the largest corpus.
    seed : int
        Base seed; each corpus draws from ``default_rng([seed, crc32(corpus)])``.
    val_share : float in [0, 1)
        Share of each corpus's non-test speakers put in ``val`` in each fold (see module
        docstring for the rounding and minimums).
    train_only : sequence of str
        Corpora used for training only in every fold (never tested nor validated on), e.g.
        a single-speaker corpus. Names absent from ``rows`` are ignored.

    Returns
    -------
    list of pd.DataFrame
        One frame per fold, each all ``len(rows)`` rows (index reset) with ``split`` in
        {train, val, test} and ``fold`` (int, 0-based).

    Examples
    --------
    >>> rows = pd.DataFrame({"corpus": "c", "speaker": ["c:1", "c:2", "c:3"],
    ...                      "gender": ["female", "male", "female"]})
    >>> folds = speaker_folds(rows, k="loso", seed=0, val_share=0.15)
    >>> sorted(f.speaker[f.split == "test"].item() for f in folds)
    ['c:1', 'c:2', 'c:3']
    """
    if k != "loso" and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2):
        raise ValueError(f"k={k!r} must be an integer >= 2 or 'loso' (one fold per speaker)")
    val_share = check_val_share(val_share)
    by_corpus = speaker_sexes(rows)
    train_only = set(train_only)
    tested = {c: s for c, s in by_corpus.items() if c not in train_only}
    if not tested:
        raise ValueError(f"every corpus in rows is in train_only={sorted(train_only)}; leave at least one to test on")
    for corpus, sexes in tested.items():
        if len(sexes) < 2:
            raise ValueError(f"corpus {corpus!r} has a single speaker ({next(iter(sexes))}), who could only be tested "
                             f"with no speaker of {corpus!r} in training; pass train_only=[{corpus!r}] to train on "
                             "it in every fold, or drop it from rows")
    largest = max(len(s) for s in tested.values())
    n_folds = largest if k == "loso" else min(int(k), largest)

    plans: list[dict[str, str]] = [{} for _ in range(n_folds)]
    for corpus, sexes in by_corpus.items():
        if corpus in train_only:
            for plan in plans:
                plan.update(dict.fromkeys(sexes, "train"))
            continue
        rng = corpus_rng(seed, corpus)
        order = [s for group in shuffled_by_sex(sexes, rng) for s in group]
        group_of = {s: j % n_folds for j, s in enumerate(order)}
        for i, plan in enumerate(plans):
            rest = {s: sex for s, sex in sexes.items() if group_of[s] != i}
            val = pick_val(rest, val_share=val_share, rng=rng)
            plan.update({s: "test" if group_of[s] == i else "val" if s in val else "train" for s in sexes})
    return [rows.assign(split=rows.speaker.map(plan), fold=i).reset_index(drop=True) for i, plan in enumerate(plans)]


def cross_corpus(rows: pd.DataFrame, *, train: Sequence[str], test: str, seed: int,
                 val_share: float) -> tuple[pd.DataFrame, list[str]]:
    """Train on some corpora, test on another, over the classes they share.

    Parameters
    ----------
    rows : pd.DataFrame
        One row per clip, with ``corpus``, ``speaker``, ``gender`` and ``label`` columns.
    train : sequence of str
        Training corpora (their speakers go to ``train`` or ``val``).
    test : str
        Test corpus (all its speakers go to ``test``); must not be in ``train``.
    seed : int
        Base seed for the per-corpus validation draw.
    val_share : float in [0, 1)
        Share of each training corpus's speakers put in ``val`` (module docstring rule).

    Returns
    -------
    rows : pd.DataFrame
        The clips of the training and test corpora whose ``label`` is a shared class, index
        reset, ``split`` in {train, val, test}.
    classes : list of str
        Labels present in the training corpora (any of them) and in the test corpus, in the
        order of :data:`pipeline.vocab.EMOTIONS`.
    """
    train = list(dict.fromkeys([train] if isinstance(train, str) else train))
    if not train:
        raise ValueError("train lists no corpus; name at least one training corpus")
    if test in train:
        raise ValueError(f"corpus {test!r} is both a training corpus (train={train}) and the test corpus; "
                         "a cross-corpus test needs disjoint corpora: drop it from train")
    val_share = check_val_share(val_share)
    by_corpus = speaker_sexes(rows, need=["label"])
    absent = [c for c in [*train, test] if c not in by_corpus]
    if absent:
        raise ValueError(f"corpus(es) {absent} have no rows; available: {sorted(by_corpus)}")
    unknown = sorted(set(rows.label.dropna()) - set(EMOTIONS))
    if unknown:
        raise ValueError(f"label(s) {unknown} are not in the vocabulary {list(EMOTIONS)}")
    train_labels = set(rows.label[rows.corpus.isin(train)])
    test_labels = set(rows.label[rows.corpus == test])
    classes = [e for e in EMOTIONS if e in train_labels and e in test_labels]
    if len(classes) < 2:
        raise ValueError(f"training corpora {train} and test corpus {test!r} share {len(classes)} class(es) {classes}; "
                         "a classifier needs at least 2: pick corpora with more classes in common")

    parts = dict.fromkeys(by_corpus[test], "test")
    for corpus in train:
        sexes = by_corpus[corpus]
        val = pick_val(sexes, val_share=val_share, rng=corpus_rng(seed, corpus))
        parts.update({s: "val" if s in val else "train" for s in sexes})
    keep = rows.corpus.isin([*train, test]) & rows.label.isin(classes)
    out = rows[keep].assign(split=lambda r: r.speaker.map(parts)).reset_index(drop=True)
    return out, classes


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _scores(g: pd.DataFrame, labels: Sequence[str]) -> dict:
    index = {c: i for i, c in enumerate(labels)}
    proba = g[[f"p_{c}" for c in labels]].fillna(0.0).to_numpy(dtype=float)
    m = compute_metrics(g.label.map(index).to_numpy(), proba, labels=list(labels), corpus=g.corpus.to_numpy())
    return {key: m[key] for key in SUMMARY_METRICS} | {"per_corpus": m["per_corpus"], "per_class": m["per_class"]}


def summarise(predictions: pd.DataFrame, *, labels: Sequence[str]) -> dict:
    """Protocol metrics from every run's test predictions.

    Parameters
    ----------
    predictions : pd.DataFrame
        One row per (seed, run, test clip): ``seed``, ``run`` (fold name), ``corpus``,
        ``label`` and ``p_<label>`` for each of ``labels`` (NaN or 0 for a class the run's
        model does not have, as in cross-corpus runs over different shared classes).
    labels : sequence of str
        Every class any run predicts.

    Returns
    -------
    dict
        - ``uar_mean`` / ``uar_std`` (and ``accuracy_``, ``macro_f1_``): mean and sample std
          (ddof=1) over folds of each fold's UAR, itself averaged over seeds;
        - ``uar_pooled`` (and ``accuracy_pooled``, ``macro_f1_pooled``): the UAR of all
          folds' test predictions pooled, averaged over seeds; ``uar_pooled_seed_std``: its
          sample std over seeds;
        - ``per_corpus.<corpus>``: ``uar_mean``, ``uar_std``, ``n_folds`` (folds that tested
          the corpus), ``uar_pooled``, ``uar_pooled_seed_std``, ``n`` (test clips),
          ``n_classes`` (classes among them: chance UAR is 1 / n_classes), ``macro_f1_pooled``,
          ``recall.<label>`` (pooled recall of each class present, mean over seeds);
        - ``recall.<label>``: pooled recall of each class over every corpus, mean over seeds;
        - ``per_fold.<run>``: ``uar`` (mean over seeds), ``n``;
        - ``per_seed.<seed>``: ``uar_pooled``, ``uar_mean``;
        - ``n_folds``, ``n_seeds``, ``n`` (test clips per seed).
        A std over a single value is 0.0, so every value is a finite number.
    """
    need = {"seed", "run", "corpus", "label", *(f"p_{c}" for c in labels)}
    if missing := sorted(need - set(predictions.columns)):
        raise ValueError(f"predictions lack column(s) {missing}; pass the protocol stage's predictions table")
    if predictions.empty:
        raise ValueError("predictions is empty; there is nothing to summarise")
    seeds = list(dict.fromkeys(predictions.seed))
    runs = list(dict.fromkeys(predictions.run))
    for seed in seeds:
        have = set(predictions.run[predictions.seed == seed])
        if have != set(runs):
            raise ValueError(f"seed {seed} lacks fold(s) {sorted(set(runs) - have)}; every seed must run every fold")
    fold = {(s, r): _scores(g, labels) for (s, r), g in predictions.groupby(["seed", "run"], sort=False)}
    pooled = {s: _scores(predictions[predictions.seed == s], labels) for s in seeds}

    out: dict = {"n_folds": len(runs), "n_seeds": len(seeds), "n": int((predictions.seed == seeds[0]).sum())}
    for key in SUMMARY_METRICS:
        out[f"{key}_mean"], out[f"{key}_std"] = _mean_std([np.mean([fold[s, r][key] for s in seeds]) for r in runs])
    for key in SUMMARY_METRICS:
        out[f"{key}_pooled"] = float(np.mean([pooled[s][key] for s in seeds]))
    out["uar_pooled_seed_std"] = _mean_std([pooled[s]["uar"] for s in seeds])[1]

    out["per_corpus"] = {}
    first = predictions[predictions.seed == seeds[0]]
    for corpus in sorted(set(predictions.corpus)):
        tested = [r for r in runs if corpus in fold[seeds[0], r]["per_corpus"]]
        block: dict = {}
        block["uar_mean"], block["uar_std"] = _mean_std(
            [np.mean([fold[s, r]["per_corpus"][corpus]["uar"] for s in seeds]) for r in tested])
        block["n_folds"] = len(tested)
        by_seed = [pooled[s]["per_corpus"][corpus]["uar"] for s in seeds]
        block["uar_pooled"], block["uar_pooled_seed_std"] = _mean_std(by_seed)
        block["macro_f1_pooled"] = float(np.mean([pooled[s]["per_corpus"][corpus]["macro_f1"] for s in seeds]))
        block["n"] = int((first.corpus == corpus).sum())
        block["n_classes"] = int(first.label[first.corpus == corpus].nunique())
        block["recall"] = {c: float(np.mean([pooled[s]["per_corpus"][corpus]["recall"][c] for s in seeds]))
                           for c in labels if c in pooled[seeds[0]]["per_corpus"][corpus]["recall"]}
        out["per_corpus"][corpus] = block
    out["recall"] = {c: float(np.mean([pooled[s]["per_class"][c]["recall"] for s in seeds])) for c in labels
                     if (first.label == c).any()}
    out["per_fold"] = {str(r): {"uar": float(np.mean([fold[s, r]["uar"] for s in seeds])),
                                "n": int(((first.run == r)).sum())} for r in runs}
    out["per_seed"] = {str(s): {"uar_pooled": pooled[s]["uar"],
                                "uar_mean": float(np.mean([fold[s, r]["uar"] for r in runs]))} for s in seeds}
    return out
