"""What speaker-balanced decoding (pipeline/balance.py) costs when its assumptions weaken.

Reads committed protocol fold predictions (default: the real-data scoreboard's `cnn`, `svm`
and `svm_compare` in metrics/real/) and prints fold-mean UAR, inductive against balanced on the
same clips (both over each corpus's classes, as `python -m pipeline.balance` scores), for

1. fewer clips: each test speaker's clips shuffled and dealt into groups of about n
   (floor(N / n) groups of N // groups or one more clip), each group balanced on its own;
2. uneven classes: each test speaker keeps every clip of one class (drawn per fold and speaker,
   the same in every seed) and a fraction of the others, all balanced together.

Every draw is seeded (`--draws` draws per row, seeds 0, 1, ...).

    python benchmarks/balance_robustness.py [--member name=predictions.csv.gz ...]
"""
from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import folds  # noqa: E402
from pipeline.balance import balance_fusion, corpus_classes  # noqa: E402
from pipeline.bundle import fuse_probabilities  # noqa: E402
from pipeline.vocab import EMOTIONS  # noqa: E402

DEFAULT = [f"{m}={ROOT / 'metrics' / 'real' / f'{m}_predictions.csv.gz'}" for m in ("cnn", "svm", "svm_compare")]


def fold_mean_uar(base: pd.DataFrame, proba: np.ndarray, labels: list[str]) -> float:
    table = base.copy()
    table[[f"p_{c}" for c in labels]] = proba
    return folds.summarise(table, labels=labels)["uar_mean"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--member", action="append", metavar="NAME=PREDICTIONS_CSV")
    ap.add_argument("--draws", type=int, default=3)
    args = ap.parse_args(argv)
    tables = [pd.read_csv(m.split("=", 1)[1]).sort_values(["seed", "run", "clip_id"]).reset_index(drop=True)
              for m in args.member or DEFAULT]
    labels = [c for c in EMOTIONS if f"p_{c}" in tables[0].columns]
    cols = [f"p_{c}" for c in labels]
    base = tables[0][["seed", "run", "clip_id", "corpus", "speaker", "label"]]
    members = [t[cols].fillna(0.0).to_numpy() for t in tables]
    weights = [1.0] * len(members)
    mask = corpus_classes(base, labels=labels)
    raw = fuse_probabilities(members, weights)
    raw = np.where(mask, raw, 0.0) / np.where(mask, raw, 0.0).sum(axis=1, keepdims=True)
    speakers = base.groupby(["seed", "run", "speaker"]).indices
    sizes = np.array([len(v) for v in speakers.values()])
    print(f"{len(members)} model(s), {len(sizes)} (seed, fold, test speaker) groups of {sizes.min()}-{sizes.max()} "
          f"clips (median {int(np.median(sizes))}); inductive {fold_mean_uar(base, raw, labels):.3f}")

    print("\n| clips balanced together | median group | inductive | balanced | effect |\n|---|---:|---:|---:|---:|")
    for n in (7, 10, 14, 20, 28, None):
        got, medians = [], []
        for draw in range(args.draws if n else 1):
            rng, group = np.random.default_rng(draw), np.empty(len(base), dtype=object)
            for key, idx in speakers.items():
                idx = rng.permutation(idx) if n else idx
                k = max(len(idx) // n, 1) if n else 1
                for g in range(k):
                    part = idx[g::k]
                    group[part] = [(key, g)] * len(part)
                    medians.append(len(part))
            got.append(fold_mean_uar(base, balance_fusion(members, weights, list(group), classes=mask, min_clips=2),
                                     labels))
        inductive = fold_mean_uar(base, raw, labels)
        print(f"| {'all of a speaker' if n is None else f'about {n}'} | {int(np.median(medians))} | {inductive:.3f} | "
              f"{np.mean(got):.3f} | {np.mean(got) - inductive:+.3f} |")

    print("\n| others kept | clips of the speaker's most frequent class | inductive | balanced | effect |"
          "\n|---:|---:|---:|---:|---:|")
    for keep in (1.0, 0.5, 0.3, 0.2, 0.1):
        got, base_uar, shares = [], [], []
        for draw in range(args.draws):
            rows = []
            for (_, run, speaker), idx in speakers.items():   # the same clips in every seed
                rng = np.random.default_rng([100 + draw, zlib.crc32(f"{run}/{speaker}".encode())])
                idx = idx[np.argsort(base.clip_id.to_numpy()[idx])]
                lab = base.label.to_numpy()[idx]
                big = rng.choice(sorted(set(lab)))
                chosen = idx[(lab == big) | (rng.random(len(idx)) < keep)]
                rows.append(chosen)
                shares.append(pd.Series(base.label.to_numpy()[chosen]).value_counts(normalize=True).iloc[0])
            rows = np.sort(np.concatenate(rows))
            sub = base.iloc[rows].reset_index(drop=True)
            groups = list(zip(sub.seed, sub.run, sub.speaker))
            bal = balance_fusion([m[rows] for m in members], weights, groups, classes=mask[rows], min_clips=2)
            got.append(fold_mean_uar(sub, bal, labels))
            base_uar.append(fold_mean_uar(sub, raw[rows], labels))
        print(f"| {keep:.0%} | {np.mean(shares):.0%} | {np.mean(base_uar):.3f} | {np.mean(got):.3f} | "
              f"{np.mean(got) - np.mean(base_uar):+.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
