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


def source_clips(params: dict, *, corpus: str, source: str) -> pd.DataFrame:
    """The clips a feature stage extracts for ``corpus`` and ``source``: the ingest manifest
    (``<data.interim>/manifests/<corpus>.csv``) or the augment table
    (``<augment.out>/<corpus>/augmented.csv``); columns include clip_id, path, duration_s."""
    if source not in SOURCES:
        raise P.ParamsError(f"--source {source!r} is not valid; choose one of {list(SOURCES)}")
    if source == "original":
        return pd.read_csv(Path(P.section(params, "data")["interim"]) / "manifests" / f"{corpus}.csv")
    return pd.read_csv(Path(P.section(params, "augment")["out"]) / corpus / "augmented.csv")


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


def extraction_job(argv: list[str] | None, *, description: str,
                   options: Callable[[argparse.ArgumentParser], None] | None = None) -> ExtractionJob:
    """Parse a feature stage's arguments (``--corpus``, ``--source`` and what ``options`` adds
    to the parser) and read what it needs from ``params.yaml``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--source", choices=SOURCES, default="original")
    if options is not None:
        options(ap)
    args = ap.parse_args(argv)
    params = P.load()
    features = P.section(params, "features")
    config = FeatureConfig.from_params(features, sr=P.section(params, "base")["sample_rate"])
    return ExtractionJob(corpus=args.corpus, source=args.source, features=features, config=config,
                         table=source_clips(params, corpus=args.corpus, source=args.source), args=args)


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
