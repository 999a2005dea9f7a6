"""What every corpus loader shares: the :class:`Clip` and :class:`Rejection` records, the
:class:`Loader` description a loader module exports as ``LOADER``, and the file walk.

Loader modules import from here (never from the :mod:`pipeline.corpora` package, which
imports them)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from pipeline.params import ParamsError

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


def unusable_entries(root: Path, *, corpus: str) -> list[Rejection]:
    """Entries under ``root`` named like audio that :func:`audio_files` cannot list, each as a
    :class:`Rejection` with the reason: dangling symbolic links, folders, and special files
    (FIFOs, sockets, devices). Sorted by path."""
    out = []
    for p in sorted(Path(root).rglob("*")):
        if p.suffix.lower() not in AUDIO_SUFFIXES or p.is_file():
            continue
        if p.is_symlink() and not p.exists():
            reason = f"{p}: dangling symbolic link (to {os.readlink(p)!r}, which does not exist); fix or remove the link"
        elif p.is_dir():
            reason = f"{p}: a folder named like an audio file; rename it (its audio files are still read)"
        else:
            reason = f"{p}: not a regular file (a FIFO, socket or device); copy the audio into a file"
        out.append(Rejection(path=p, corpus=corpus, reason=reason))
    return out


class Unlabelled(Exception):
    """Raised by a loader's name parser: the file becomes a :class:`Rejection` of ``kind``."""

    def __init__(self, reason: str, *, kind: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def loader_options(options: Mapping | None, *, corpus: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``defaults`` updated with ``options``; raise :class:`ParamsError` for an unknown key."""
    merged = dict(defaults)
    for key, value in (options or {}).items():
        if key not in defaults:
            raise ParamsError(
                f"params.yaml: ingest.{corpus}.{key} is not a {corpus} option; valid: {sorted(defaults) or 'none'}"
            )
        merged[key] = value
    return merged


def collect(
    paths: Iterable[Path], *, corpus: str, parse: Callable[[Path], Clip]
) -> tuple[list[Clip], list[Rejection]]:
    """Parse each path in sorted order; keep the first file of each ``clip_id``.

    ``parse`` returns a :class:`Clip` or raises :class:`Unlabelled`. A later file with an
    already-seen ``clip_id`` is rejected as ``"duplicate of <first path>"``.
    """
    clips: list[Clip] = []
    rejections: list[Rejection] = []
    first: dict[str, Path] = {}
    for path in sorted(paths):
        try:
            clip = parse(path)
        except Unlabelled as err:
            rejections.append(Rejection(path=path, corpus=corpus, reason=err.reason, kind=err.kind))
            continue
        if clip.clip_id in first:
            rejections.append(Rejection(path=path, corpus=corpus, reason=f"duplicate of {first[clip.clip_id]}"))
            continue
        first[clip.clip_id] = path
        clips.append(clip)
    return clips, rejections


@dataclass(frozen=True)
class Loader:
    """One corpus's loader, as :func:`pipeline.corpora.scan` runs it.

    parse : ``parse(path, **kwargs) -> Clip``, raising :class:`Unlabelled` for a file that
        gets no label; ``kwargs`` are what ``prepare`` returns.
    options : the corpus's options (params ``ingest.<corpus>``) and their defaults; any
        other key is refused.
    prepare : ``prepare(root, options) -> kwargs for parse``: validates the options and reads
        what the corpus keeps beside its audio (CREMA-D's demographics table). Default: the
        options themselves.
    extra_files : ``extra_files(root) -> paths`` of files to label besides audio files (RAVDESS
        videos, which are reported as excluded).
    """

    parse: Callable[..., Clip]
    options: Mapping[str, Any] = field(default_factory=dict)
    prepare: Callable[[Path, dict[str, Any]], dict[str, Any]] | None = None
    extra_files: Callable[[Path], list[Path]] | None = None

