"""Corpus loaders: one module per corpus, each parsing that corpus's documented file names.

A loader never opens the audio (that is the ingest stage's job); it finds candidate files
recursively and turns each name into a :class:`Clip`, or into a :class:`Rejection` saying why
it cannot be labelled (or why params exclude it). Nothing is guessed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".aif", ".aiff")


@dataclass(frozen=True)
class Clip:
    """Labels of one file, from its name (and corpus metadata)."""

    path: Path
    corpus: str            # ravdess | tess | savee | cremad | emodb
    clip_id: str           # unique across corpora, e.g. "ravdess:03-01-05-01-02-01-12"
    speaker: str           # unique across corpora, e.g. "ravdess:12"
    gender: str            # male | female | unknown
    emotion: str           # canonical vocabulary (pipeline.vocab.EMOTIONS)
    source_label: str      # the corpus's own code, e.g. "05", "ANG", "ps", "W"
    extra: dict = field(default_factory=dict, compare=False)  # intensity, statement, age, ...


@dataclass(frozen=True)
class Rejection:
    """A file that gets no label: ``kind`` is "rejected" (a fault) or "excluded" (by params)."""

    path: Path
    corpus: str
    reason: str
    kind: str = "rejected"


def audio_files(root: Path) -> list[Path]:
    """All files under ``root`` (recursively) with an audio suffix, sorted; case-insensitive."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
