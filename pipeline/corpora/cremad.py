"""CREMA-D (Cao et al. 2014): ``1001_DFA_ANG_XX.wav``.

``ACTOR_SENTENCE_EMOTION_LEVEL``: actors 1001-1091, twelve sentence codes, six emotions,
level LO/MD/HI or XX (unspecified). Sex and age come from ``VideoDemographics.csv``
(columns ActorID, Age, Sex, Race, Ethnicity) found anywhere under the corpus folder; without
it, or for an actor it does not list, gender is "unknown" and no age is given.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

from pipeline.corpora.base import Clip, Loader, Unlabelled

CORPUS = "cremad"
DEMOGRAPHICS = "VideoDemographics.csv"
ACTORS = range(1001, 1092)
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SEXES = {"Male": "male", "Female": "female"}


def read_demographics(path: Path) -> dict[str, dict]:
    """Read ``VideoDemographics.csv`` into ``{actor_id: {"gender": ..., "age": int | None}}``.

    Raises ``ValueError`` naming the file when the ActorID or Sex column is missing.
    """
    with Path(path).open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"ActorID", "Sex"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {sorted(missing)}; expected ActorID, Age, Sex, Race, Ethnicity"
            )
        table = {}
        for row in reader:
            age = (row.get("Age") or "").strip()
            table[row["ActorID"].strip()] = {
                "gender": SEXES.get((row["Sex"] or "").strip(), "unknown"),
                "age": int(age) if age.isdigit() else None,
            }
    return table


def parse(path: Path, *, demographics: Mapping[str, Mapping] | None = None) -> Clip:
    """Turn one CREMA-D file name into a :class:`Clip`, or raise :class:`Unlabelled`."""
    fields = path.stem.split("_")
    if len(fields) != 4:
        raise Unlabelled(f"name {path.name!r} does not follow CREMA-D ACTOR_SENTENCE_EMOTION_LEVEL (1001_DFA_ANG_XX)")
    actor, sentence, emotion, level = fields
    if not (actor.isdigit() and len(actor) == 4 and int(actor) in ACTORS):
        raise Unlabelled(f"actor {actor!r} is out of range 1001-1091")
    for value, valid, field in ((sentence, SENTENCES, "sentence"), (emotion, EMOTIONS, "emotion"),
                                (level, LEVELS, "level")):
        if value not in valid:
            raise Unlabelled(f"{field} code {value!r} is not a CREMA-D code ({', '.join(valid)})")
    person = (demographics or {}).get(actor, {})
    extra: dict = {"sentence": sentence, "level": LEVELS[level]}
    if person.get("age") is not None:
        extra["age"] = person["age"]
    return Clip(
        path=path,
        corpus=CORPUS,
        clip_id=f"{CORPUS}:{path.stem}",
        speaker=f"{CORPUS}:{actor}",
        gender=person.get("gender", "unknown"),
        emotion=EMOTIONS[emotion],
        source_label=emotion,
        extra=extra,
    )


def prepare(root: Path, options: dict[str, Any]) -> dict[str, Any]:
    """``parse``'s keywords: the first ``VideoDemographics.csv`` under ``root`` (sorted paths), or none."""
    tables = sorted(p for p in Path(root).rglob("*") if p.is_file() and p.name.lower() == DEMOGRAPHICS.lower())
    return {"demographics": read_demographics(tables[0]) if tables else {}}


LOADER = Loader(parse=parse, prepare=prepare)
