"""Corpus loaders: one module per corpus, each parsing that corpus's documented file names.

A loader never opens the audio (that is the ingest stage's job); :func:`scan` finds candidate
files recursively and the corpus's parser turns each name into a :class:`Clip`, or into a
:class:`Rejection` saying why it cannot be labelled (or why params exclude it). Nothing is
guessed. A corpus module holds its code tables, a ``parse`` function and ``LOADER``
(:class:`~pipeline.corpora.base.Loader`); :data:`LOADERS` lists them by name. To add a
corpus: write ``pipeline/corpora/<name>.py`` like ``savee.py`` and add it to :data:`LOADERS`.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Mapping

from pipeline.corpora import cremad, emodb, ravdess, savee, tess
from pipeline.corpora.base import (AUDIO_SUFFIXES, Clip, Loader, Rejection, Unlabelled, audio_files, collect,
                                   loader_options, unusable_entries)

__all__ = ["AUDIO_SUFFIXES", "LOADERS", "Clip", "Loader", "Rejection", "Unlabelled", "audio_files", "scan",
           "unusable_entries"]

LOADERS: dict[str, Loader] = {
    "ravdess": ravdess.LOADER,
    "tess": tess.LOADER,
    "savee": savee.LOADER,
    "cremad": cremad.LOADER,
    "emodb": emodb.LOADER,
}


def scan(corpus: str, root: Path, *, options: Mapping | None = None) -> tuple[list[Clip], list[Rejection]]:
    """Label every file of ``corpus`` under ``root`` (searched recursively) from its name.

    Parameters
    ----------
    corpus : a key of :data:`LOADERS`.
    root : the corpus folder.
    options : params ``ingest.<corpus>`` (e.g. RAVDESS ``{"include_song": true}``); an unknown
        key or a bad value raises :class:`~pipeline.params.ParamsError`.

    Returns
    -------
    clips, rejections : list of Clip, list of Rejection
        Both in sorted path order; a later file with an already-seen ``clip_id`` is a
        rejection ("duplicate of <first path>").
    """
    if corpus not in LOADERS:
        raise KeyError(f"no loader for corpus {corpus!r}; known: {sorted(LOADERS)}")
    loader = LOADERS[corpus]
    merged = loader_options(options, corpus=corpus, defaults=loader.options)
    kwargs = loader.prepare(Path(root), merged) if loader.prepare else merged
    files = audio_files(root) + (loader.extra_files(Path(root)) if loader.extra_files else [])
    return collect(files, corpus=corpus, parse=partial(loader.parse, **kwargs))
