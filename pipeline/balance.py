"""Speaker-balanced decoding: a transductive output correction for one speaker's clips.

A model's class probabilities for one speaker drift with the voice: a speaker whose every clip
sounds a little angry to the model gets "angry" for many of them. When a speaker's clips are
known to cover the classes about evenly (acted corpora: each actor reads every emotion), the
speaker's mean probability per class estimates that drift. :func:`balance_speaker` divides each
clip's probabilities by it and renormalises: one step of prior correction toward a uniform
class prior, from the speaker's unlabelled clips (transductive, as per-speaker feature
normalisation is; report it as its own setting).

The assumption is the setting's whole price: a speaker who is mostly neutral (a call, a
meeting) is pushed away from neutral. It also needs enough clips. Measured on the development
folds with the committed predictions of ``cnn`` + ``svm`` + ``svm_compare`` (README,
"Speaker-balanced decoding"): all of a speaker's 30-120 test clips +0.074 UAR; random groups of
14-27 of them +0.022, of 28-55 +0.055; groups of 10-19 break even, of 7-13 lose 0.032; a speaker
whose clips are 40-70 % one class loses 0.01-0.10. :data:`MIN_CLIPS` refuses fewer than 14.

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

MIN_CLIPS = 14
"""Fewest clips of one speaker :func:`balance_speaker` accepts (the measured break-even)."""


class BalanceError(ValueError):
    """Too few clips, or inputs that cannot be balanced; the message names the fix."""


def balance_speaker(proba: np.ndarray, *, min_clips: int = MIN_CLIPS) -> np.ndarray:
    """One speaker's probabilities divided by their mean per class, rows renormalised.

    Parameters
    ----------
    proba : np.ndarray, shape (n_clips, n_classes)
        Class probabilities of ``n_clips >= min_clips`` clips of one speaker (rows sum to 1).
    min_clips : int
        Fewer clips raise :class:`BalanceError`.

    Returns
    -------
    np.ndarray, shape (n_clips, n_classes), float64
        The corrected probabilities; each row sums to 1. A class with mean probability 0
        (never given any probability) stays at 0.
    """
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise BalanceError(f"expected (n_clips, n_classes) probabilities, got shape {p.shape}")
    if len(p) < min_clips:
        raise BalanceError(f"{len(p)} clip(s) of one speaker: speaker-balanced decoding needs at least {min_clips} "
                           "(fewer lose accuracy on the development folds); give more clips of the speaker, or "
                           "predict without balancing")
    if not np.isfinite(p).all() or (p < 0).any():
        raise BalanceError("probabilities must be finite and non-negative")
    prior = p.mean(axis=0, keepdims=True)
    q = np.divide(p, prior, out=np.zeros_like(p), where=prior > 0)
    total = q.sum(axis=1, keepdims=True)
    return np.divide(q, total, out=np.full_like(q, 1.0 / q.shape[1]), where=total > 0)


def balance_groups(proba: np.ndarray, groups: Sequence, *, min_clips: int = MIN_CLIPS) -> np.ndarray:
    """:func:`balance_speaker` within each group of rows (``groups``: one key per row, e.g.
    the speaker, or (seed, fold, speaker) for protocol predictions)."""
    proba = np.asarray(proba, dtype=np.float64)
    keys = pd.Series(pd.factorize(pd.Series(list(groups)))[0])
    if len(keys) != len(proba):
        raise BalanceError(f"{len(keys)} group keys for {len(proba)} rows of probabilities")
    out = np.empty_like(proba)
    for _, idx in keys.groupby(keys).indices.items():
        out[idx] = balance_speaker(proba[idx], min_clips=min_clips)
    return out


def balance_fusion(members: Sequence[np.ndarray], weights: Sequence[float], groups: Sequence, *,
                   min_clips: int = MIN_CLIPS) -> np.ndarray:
    """Each member balanced per group, their weighted mean, balanced again (shape as a member's);
    a single model (one member) is balanced once."""
    if len(members) != len(weights) or not members:
        raise BalanceError(f"{len(members)} member probability tables for {len(weights)} weights")
    if len(members) == 1:
        return balance_groups(members[0], groups, min_clips=min_clips)
    fused = sum(w * balance_groups(m, groups, min_clips=min_clips) for m, w in zip(members, weights, strict=True))
    return balance_groups(fused / float(sum(weights)), groups, min_clips=min_clips)


def rescore(tables: Mapping[str, pd.DataFrame], weights: Sequence[float], *, labels: Sequence[str]) -> pd.DataFrame:
    """Protocol predictions (``seed, run, clip_id, corpus, speaker, label, p_<label>``) of one
    model, or of a fusion's members on the same runs and clips, balanced per (seed, run,
    speaker): a protocol predictions table with ``predicted`` and ``p_<label>`` replaced."""
    cols = [f"p_{c}" for c in labels]
    keyed = {}
    for name, t in tables.items():
        if missing := sorted({"seed", "run", "clip_id", "speaker", *cols} - set(t.columns)):
            raise BalanceError(f"predictions of {name!r} lack column(s) {missing}; pass a protocol predictions.csv")
        keyed[name] = t.sort_values(["seed", "run", "clip_id"]).reset_index(drop=True)
    first_name, first = next(iter(keyed.items()))
    for name, t in keyed.items():
        if not t[["seed", "run", "clip_id"]].equals(first[["seed", "run", "clip_id"]]):
            raise BalanceError(f"{name!r} and {first_name!r} hold different runs or clips; score both with the same "
                               "protocol params")
    groups = list(zip(first.seed, first.run, first.speaker))
    proba = balance_fusion([t[cols].fillna(0.0).to_numpy() for t in keyed.values()], weights, groups)
    out = first.drop(columns=[c for c in first.columns if c.startswith("p_")] + ["predicted"], errors="ignore")
    out[cols] = proba
    out["predicted"] = np.asarray(labels)[proba.argmax(axis=1)]
    return out


def main(argv: list[str] | None = None) -> int:
    from pipeline import folds
    from pipeline.vocab import EMOTIONS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--member", action="append", required=True, metavar="NAME=PREDICTIONS_CSV",
                    help="a model's protocol predictions.csv (repeat for a fusion's members)")
    ap.add_argument("--weights", type=float, nargs="+", help="fusion weights, one per --member (default: equal)")
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
        table = rescore(tables, weights, labels=labels)
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
