"""Speakers: the one home of how speakers are ordered, partitioned and kept apart.

Used by the ``split`` stage (one train/val/test split) and by :mod:`pipeline.folds` (speaker
k-fold and cross-corpus protocols), and by every consumer that must prove a score is
speaker-independent (``train``, ``evaluate``, ``protocol``). Pure functions, no I/O.

- **Ordering.** Each corpus draws from its own generator, :func:`corpus_rng`
  (``default_rng([seed, crc32(corpus)])``), so adding a corpus never reshuffles another.
  Within a corpus each sex group is sorted and shuffled (:func:`shuffled_by_sex`);
  :func:`interleave` merges the groups by fractional position, so that every prefix of the
  order holds the sexes in proportion.
- **Sizes.** :func:`partition_sizes` rounds proportions of speakers to whole speakers.
- **Guards.** :func:`check_disjoint` (no speaker in two partitions) and :func:`check_unseen`
  (no test speaker among a model's training speakers, :class:`LeakageError`).
"""
from __future__ import annotations

import zlib
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.schema import PARTITIONS


class LeakageError(ValueError):
    """The test set shares speakers with the model's training data."""


def corpus_rng(seed: int, corpus: str) -> np.random.Generator:
    """The generator every speaker draw of ``corpus`` uses, for base seed ``seed``."""
    return np.random.default_rng([seed, zlib.crc32(corpus.encode())])


def speaker_sexes(rows: pd.DataFrame, *, need: Sequence[str] = ()) -> dict[str, dict[str, str]]:
    """corpus -> {speaker: sex} (sex ``unknown`` when missing), after checking the columns
    (``corpus``, ``speaker``, ``gender`` and ``need``) and that no speaker id spans corpora."""
    missing = sorted({"corpus", "speaker", "gender", *need} - set(rows.columns))
    if missing:
        raise ValueError(f"rows lack column(s) {missing}; pass rows shaped like data/interim/split.csv")
    if rows.empty:
        raise ValueError("rows is empty; there are no speakers to split")
    per_speaker = rows.groupby("speaker").corpus.nunique()
    if (per_speaker > 1).any():
        raise ValueError(f"speaker(s) {sorted(per_speaker[per_speaker > 1].index)} appear in more than one corpus; "
                         "speaker ids must be unique across corpora (prefix them with the corpus)")
    sexes = rows.assign(gender=rows.gender.fillna("unknown").astype(str))
    return {corpus: g.groupby("speaker").gender.first().to_dict() for corpus, g in sexes.groupby("corpus", sort=True)}


def shuffled_by_sex(sexes: Mapping[str, str], rng: np.random.Generator) -> list[list[str]]:
    """Each sex group (sexes and speakers sorted first, for determinism), shuffled by ``rng``."""
    out = []
    for sex in sorted(set(sexes.values())):
        group = sorted(s for s, g in sexes.items() if g == sex)
        out.append([group[i] for i in rng.permutation(len(group))])
    return out


def interleave(sexes: Mapping[str, str], rng: np.random.Generator) -> list[str]:
    """Every speaker of ``sexes`` (speaker -> sex), each sex group shuffled by ``rng`` and the
    groups merged by fractional position: every prefix holds the sexes in proportion."""
    keyed = []
    for group in shuffled_by_sex(sexes, rng):
        keyed += [((i + 0.5) / len(group), sexes[s], s) for i, s in enumerate(group)]
    return [s for _, _, s in sorted(keyed)]


def partition_sizes(n: int, proportions: Mapping[str, float]) -> dict[str, int]:
    """Speakers per partition for ``n`` speakers: largest-remainder rounding of the
    proportions, with at least one speaker in every partition whose proportion is > 0
    (when ``n`` allows), train keeping the rest."""
    total = sum(proportions.values())
    exact = {p: n * proportions.get(p, 0) / total for p in PARTITIONS}
    sizes = {p: int(np.floor(v)) for p, v in exact.items()}
    for p in sorted(PARTITIONS, key=lambda p: exact[p] - sizes[p], reverse=True)[: n - sum(sizes.values())]:
        sizes[p] += 1
    for p in ("test", "val"):
        if proportions.get(p, 0) > 0 and sizes[p] == 0 and sizes["train"] > 1:
            sizes[p], sizes["train"] = 1, sizes["train"] - 1
    return sizes


def assign_speakers(sexes: Mapping[str, str], *, proportions: Mapping[str, float],
                    rng: np.random.Generator) -> dict[str, str]:
    """Map each speaker of ``sexes`` (speaker -> sex) to a partition: the :func:`interleave`
    order is cut into test, then val, then train, of :func:`partition_sizes`."""
    order = interleave(sexes, rng)
    sizes = partition_sizes(len(order), proportions)
    out, start = {}, 0
    for part in ("test", "val", "train"):
        for s in order[start:start + sizes[part]]:
            out[s] = part
        start += sizes[part]
    return out


def check_val_share(val_share: float) -> float:
    """A share of non-test speakers for validation: a number in [0, 1)."""
    if isinstance(val_share, bool) or not isinstance(val_share, (int, float)) or not 0 <= val_share < 1:
        raise ValueError(f"val_share={val_share!r} must be in [0, 1) (a share of the non-test speakers); "
                         "use 0 for no validation speakers")
    return float(val_share)


def n_val(n: int, val_share: float) -> int:
    """Validation speakers out of ``n`` candidates: round(n * share), >= 1, leaving >= 2 to train."""
    if val_share <= 0 or n < 3:
        return 0
    return int(min(n - 2, max(1, np.floor(n * val_share + 0.5))))


def pick_val(sexes: Mapping[str, str], *, val_share: float, rng: np.random.Generator) -> set[str]:
    """The validation speakers among ``sexes``: the first :func:`n_val` of the :func:`interleave` order."""
    return set(interleave(sexes, rng)[:n_val(len(sexes), val_share)])


def check_disjoint(rows: pd.DataFrame) -> None:
    """Raise ``ValueError`` if any speaker is in two partitions (the guard every consumer can call)."""
    per = rows.groupby("speaker").split.nunique()
    if (per > 1).any():
        raise ValueError(f"speaker(s) in more than one partition: {sorted(per[per > 1].index)}")


def check_unseen(test_speakers: Sequence[str], train_speakers: Sequence[str]) -> None:
    """Raise :class:`LeakageError` naming any test speaker the model was trained on."""
    shared = sorted(set(test_speakers) & set(train_speakers))
    if shared:
        raise LeakageError(f"test speakers {shared} were seen in training; a speaker-independent score needs "
                           "disjoint speakers: rerun `dvc repro` so the split and the model agree")
