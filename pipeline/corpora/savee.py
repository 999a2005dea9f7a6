"""SAVEE, Surrey Audio-Visual Expressed Emotion (Haq & Jackson 2009).

Two layouts: flat ``DC_a01.wav`` (e.g. Kaggle's ``ALL/``) and the original
``AudioData/DC/a01.wav`` (speaker from the parent folder); both give ``clip_id``
``"savee:DC_a01"``. Emotion codes a, d, f, h, n, sa, su; sentences 01-15 per emotion and
01-30 for neutral; speakers DC, JE, JK, KL, all male.
"""
from __future__ import annotations

import re
from pathlib import Path

from pipeline.corpora.base import Clip, Loader, Unlabelled

CORPUS = "savee"
SPEAKERS = ("DC", "JE", "JK", "KL")
EMOTIONS = {
    "a": "angry", "d": "disgust", "f": "fearful", "h": "happy",
    "n": "neutral", "sa": "sad", "su": "surprised",
}
SENTENCES = {code: 30 if code == "n" else 15 for code in EMOTIONS}  # sentences per emotion

_FLAT = re.compile(r"([A-Za-z]+)_([a-zA-Z]+)(\d+)")  # DC_a01, DC_sa01
_ORIGINAL = re.compile(r"([a-zA-Z]+)(\d+)")  # a01, sa01 (speaker = parent folder)


def parse(path: Path) -> Clip:
    """Turn one SAVEE path into a :class:`Clip`, or raise :class:`Unlabelled`."""
    folder = path.parent.name
    if (flat := _FLAT.fullmatch(path.stem)) is not None:
        speaker, code, number = flat.groups()
        if folder in SPEAKERS and folder != speaker:
            raise Unlabelled(f"name says speaker {speaker!r} but the folder says {folder!r}")
    elif (original := _ORIGINAL.fullmatch(path.stem)) is not None:
        code, number = original.groups()
        speaker = folder
    else:
        raise Unlabelled(f"name {path.name!r} does not follow SAVEE DC_a01 (flat) or DC/a01 (speaker folder)")
    if speaker not in SPEAKERS:
        raise Unlabelled(f"speaker {speaker!r} is not a SAVEE speaker ({', '.join(SPEAKERS)})")
    if code not in EMOTIONS:
        raise Unlabelled(f"emotion code {code!r} is not a SAVEE code ({', '.join(EMOTIONS)})")
    if len(number) != 2 or not 1 <= int(number) <= SENTENCES[code]:
        raise Unlabelled(f"sentence {number!r} is out of range 01-{SENTENCES[code]:02d} for emotion {code!r}")
    return Clip(
        path=path,
        corpus=CORPUS,
        clip_id=f"{CORPUS}:{speaker}_{code}{number}",
        speaker=f"{CORPUS}:{speaker}",
        gender="male",
        emotion=EMOTIONS[code],
        source_label=code,
        extra={"sentence": number},
    )


LOADER = Loader(parse=parse)
