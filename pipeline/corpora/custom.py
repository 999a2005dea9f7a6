"""Your own corpus: a folder of audio and a CSV table of its labels (params ``custom.<name>``).

The table (``custom.<name>.table``, relative to the corpus folder) has one row per clip with
the columns ``path`` (relative to the corpus folder), ``speaker`` and ``emotion``, and
optionally ``sex`` (``female``/``male``, or ``f``/``m``; empty or absent: ``unknown``). Its
emotions map onto the vocabulary through ``custom.<name>.labels`` (``{their label:
vocabulary emotion}``); a label that is already a vocabulary emotion needs no entry.

Nothing is guessed: a row whose file is missing, whose label is not mapped, whose speaker is
empty or whose path is listed twice becomes a rejection with its reason; an audio file in the
folder that the table does not list is reported as excluded. The clip id is
``<name>:<path without suffix, "/" as "__">`` (``mine:spk1__ang_01``) and the speaker id
``<name>:<speaker>``.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Mapping

import pandas as pd

from pipeline.corpora.base import Clip, Rejection, audio_files
from pipeline.params import ParamsError
from pipeline.vocab import EMOTIONS

REQUIRED = ("path", "speaker", "emotion")
SEXES = {"female": "female", "f": "female", "male": "male", "m": "male", "": "unknown"}


def read_table(corpus: str, root: Path, table: str) -> pd.DataFrame:
    """The label table as strings (empty cells ""), its columns checked; raise
    :class:`ParamsError` naming the file and the fix when it cannot be used at all."""
    path = Path(root) / table
    if not path.is_file():
        raise ParamsError(f"{path}: custom.{corpus}.table is not a file; put the label table (CSV with columns "
                          f"{list(REQUIRED)} and optional sex) in the corpus folder")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ParamsError(f"{path}: the label table is empty; it needs a header {list(REQUIRED)} and one row "
                          "per clip") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ParamsError(f"{path}: not a readable CSV table ({err}); save it as UTF-8 CSV") from None
    columns = [c.strip().lower() for c in frame.columns]
    if twice := sorted({c for c in columns if columns.count(c) > 1}):
        raise ParamsError(f"{path}: the label table has column(s) {twice} more than once (names ignore case and "
                          "spaces); keep one of each")
    frame.columns = columns
    if missing := [c for c in REQUIRED if c not in frame.columns]:
        raise ParamsError(f"{path}: the label table has no column(s) {missing}; it needs {list(REQUIRED)} "
                          "(and optionally sex)")
    return frame


def scan(corpus: str, root: Path, *, table: str, labels: Mapping[str, str]) -> tuple[list[Clip], list[Rejection]]:
    """Label the clips of custom corpus ``corpus`` (folder ``root``) from its table.

    Returns the clips in table order and the rejections (rows that cannot be used, and
    audio files the table does not list, as ``excluded``)."""
    root = Path(root)
    frame = read_table(corpus, root, table)
    where = f"{table} row"
    clips: list[Clip] = []
    rejections: list[Rejection] = []
    first: dict[str, int] = {}           # path -> row
    ids: dict[str, int] = {}             # clip id -> row
    listed: dict[Path, int] = {}         # resolved file -> row
    named: set[str] = set()              # every path the table names (normalised)
    for i, row in enumerate(frame.to_dict("records"), start=2):     # row 1 is the header
        rel = row["path"].strip().replace("\\", "/")      # a table written on Windows
        path = root / rel
        label, speaker = row["emotion"].strip(), row["speaker"].strip()
        sex = row.get("sex", "").strip().lower()

        def reject(reason: str, kind: str = "rejected") -> None:
            rejections.append(Rejection(path=path, corpus=corpus, reason=f"{path}: {where} {i}: {reason}", kind=kind))

        if not rel or PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
            reject(f"path {rel!r} must be a file path relative to the corpus folder")
            continue
        key = os.path.normpath(rel)
        named.add(key)
        if key in first:
            reject(f"lists {rel!r} again (first on row {first[key]}); list each clip once")
            continue
        first[key] = i
        if not path.is_file():
            reject(f"file {rel!r} does not exist; fix the path or remove the row")
            continue
        if (same := listed.get(path.resolve())) is not None:   # two names (links) of one recording
            reject(f"{rel!r} is the same file as row {same} (a link); list each recording once")
            continue
        listed[path.resolve()] = i
        if not speaker:
            reject("has no speaker; every clip needs one (the split is by speaker)")
            continue
        emotion = labels.get(label, label if label in EMOTIONS else None)
        if emotion is None:
            reject(f"emotion {label!r} is not mapped; add it to custom.{corpus}.labels (to one of {list(EMOTIONS)})")
            continue
        if sex not in SEXES:
            reject(f"sex {row.get('sex')!r} is not female/male (f/m) or empty")
            continue
        clip_id = f"{corpus}:{str(PurePosixPath(rel).with_suffix('')).replace('/', '__')}"
        if clip_id in ids:
            reject(f"gets clip id {clip_id!r}, as row {ids[clip_id]} does; rename one of the files")
            continue
        ids[clip_id] = i
        clips.append(Clip(path=path, corpus=corpus, clip_id=clip_id,
                          speaker=f"{corpus}:{speaker}", gender=SEXES[sex], emotion=emotion, source_label=label))
    for path in audio_files(root):
        if os.path.normpath(path.relative_to(root)) not in named:
            rejections.append(Rejection(path=path, corpus=corpus, kind="excluded",
                                        reason=f"{path}: not listed in {table}; add a row to label it"))
    return clips, rejections
