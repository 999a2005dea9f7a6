"""What the feature stages (``features``, ``functionals``) extract: the clips of one corpus
from one source (the ingested corpus or its augmented copies), and their command line."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import audio, params as P
from pipeline.extraction import FeatureConfig, prepare

SOURCES = ("original", "augmented")
"""Where a feature stage's clips come from: the ingested corpus or its augmented copies."""

STAGE_OF_INPUT = {"sequence": "frames", "utterance": "frames", "functionals": "functionals", "compare": "compare",
                  "ge2e": "ge2e"}
"""Which feature stage writes each model input: ``features`` both frame arrays, ``functionals``
eGeMAPS (``--kind functionals``), ``compare`` ComParE (``--kind compare``), ``ge2e`` the voice
encoder's features (``--kind ge2e``)."""


def copies_read(params: dict, stage_kind: str) -> int | None:
    """The highest augmented copy number some model trains on from the feature stage of
    ``stage_kind`` ("frames", "functionals" or "compare"): the largest ``models.<m>.copies``
    over the models whose ``input`` that stage writes (:data:`STAGE_OF_INPUT`); ``None`` (all
    copies) when one of them takes all (``copies: null``) or no model reads it.

    Reads ``models.<m>.input`` and ``models.<m>.copies`` of the models that may read it (the
    schema's :data:`~pipeline.schema.MODEL_INPUTS`), the params dvc.yaml declares for the
    augmented feature stages: ``augment.copies: 8`` with ``models.svm.copies: null`` then
    extracts eGeMAPS of all 8 copies but frame features of the 2 the deep models take."""
    from pipeline.schema import MODEL_INPUTS
    if stage_kind not in set(STAGE_OF_INPUT.values()):
        raise ValueError(f"stage kind {stage_kind!r}; choose one of {sorted(set(STAGE_OF_INPUT.values()))}")
    models = P.section(params, "models")   # validated: copies is null or an integer >= 0
    wanted = []
    for name, inputs in MODEL_INPUTS.items():
        if name not in models or stage_kind not in {STAGE_OF_INPUT[k] for k in inputs}:
            continue
        section = models[name] or {}
        if STAGE_OF_INPUT.get(section.get("input", inputs[0])) != stage_kind:
            continue
        wanted.append(section.get("copies"))
    return None if not wanted or None in wanted else max(wanted)


def source_clips(params: dict, *, corpus: str, source: str) -> pd.DataFrame:
    """The clips a feature stage extracts for ``corpus`` and ``source``: the ingest manifest
    (``<data.interim>/manifests/<corpus>.csv``) or the augment table
    (``<augment.out>/<corpus>/augmented.csv``, with its ``copy`` numbers); columns include
    clip_id, path, duration_s."""
    if source not in SOURCES:
        raise P.ParamsError(f"--source {source!r} is not valid; choose one of {list(SOURCES)}")
    if source == "original":
        return pd.read_csv(Path(P.section(params, "data")["interim"]) / "manifests" / f"{corpus}.csv")
    return pd.read_csv(Path(P.section(params, "augment")["out"]) / corpus / "augmented.csv")


def first_copies(table: pd.DataFrame, copies: int | None, *, kind: str) -> tuple[pd.DataFrame, str]:
    """The rows of an augment table with copy numbers 1 to ``copies`` (``None``: all), and a
    line saying what was left out and why ("" when nothing was)."""
    made = int(table["copy"].max()) if len(table) else 0
    if copies is None or copies >= made:
        return table, ""
    kept = table[table["copy"] <= copies].reset_index(drop=True)
    return kept, (f"copies 1-{copies} of {made}, {len(kept)} of {len(table)} clips (the most that a model reading "
                  f"the {kind} features trains on, models.<name>.copies); {len(table) - len(kept)} not extracted")


@dataclass(frozen=True)
class ExtractionJob:
    """What a feature stage (``features`` or ``functionals``) extracts, from its command line
    (``--corpus``, ``--source``) and the ``features`` params."""

    corpus: str
    source: str
    features: dict                # the validated ``features`` section
    config: FeatureConfig
    table: pd.DataFrame           # the clips (:func:`source_clips`)
    args: argparse.Namespace      # every parsed argument, including a stage's own ``options``
    selection: str = ""           # augmented: which copies, of how many, and why (for the stage's report)


def extraction_job(argv: list[str] | None, *, description: str,
                   options: Callable[[argparse.ArgumentParser], None] | None = None,
                   stage_kind: Callable[[argparse.Namespace], str] = lambda args: "frames") -> ExtractionJob:
    """Parse a feature stage's arguments (``--corpus``, ``--source`` and what ``options`` adds
    to the parser) and read what it needs from ``params.yaml``. ``stage_kind`` names the
    features the stage writes (from its arguments); with ``--source augmented`` only the copies
    some model reads from them are extracted (:func:`copies_read`)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--source", choices=SOURCES, default="original")
    if options is not None:
        options(ap)
    args = ap.parse_args(argv)
    params = P.load()
    features = P.section(params, "features")
    config = FeatureConfig.from_params(features, sr=P.section(params, "base")["sample_rate"])
    table, selection = source_clips(params, corpus=args.corpus, source=args.source), ""
    if args.source == "augmented":
        kind = stage_kind(args)
        table, selection = first_copies(table, copies_read(params, kind), kind=kind)
    return ExtractionJob(corpus=args.corpus, source=args.source, features=features, config=config, table=table, args=args,
                         selection=selection)


def load_prepared(paths: list[str], *, config: FeatureConfig) -> tuple[list[tuple[int, np.ndarray, int]], list[str]]:
    """Decode each path at ``config.sr`` and prepare it (:func:`pipeline.extraction.prepare`):
    ``[(position in paths, y_fixed, n_valid)]`` for the clips that loaded, and one error line
    (naming the file) per clip that did not. One bad file never stops the others."""
    loaded, errors = [], []
    for i, path in enumerate(paths):
        try:
            y_fixed, n_valid = prepare(audio.load(path, sr=config.sr), config=config)
        except audio.AudioError as err:
            errors.append(str(err))
            continue
        loaded.append((i, y_fixed, n_valid))
    return loaded, errors
