"""EMO-DB, Berlin Database of Emotional Speech (Burkhardt et al. 2005): ``03a01Fa.wav``.

Speaker (2 digits), text code (a01 ... b10), emotion letter (German initials: W Wut,
L Langeweile, E Ekel, A Angst, F Freude, T Trauer, N neutral) and version letter (a-z).
Speaker sex is from the corpus documentation.
"""
from __future__ import annotations

import re
from pathlib import Path

from pipeline.corpora.base import Clip, Loader, Unlabelled

CORPUS = "emodb"
SPEAKERS = {
    "03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
    "12": "male", "13": "female", "14": "female", "15": "male", "16": "female",
}
TEXTS = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")
EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral"}

_NAME = re.compile(r"(\d{2})([a-z]\d{2})([A-Z])([a-z])")


def parse(path: Path) -> Clip:
    """Turn one EMO-DB file name into a :class:`Clip`, or raise :class:`Unlabelled`."""
    match = _NAME.fullmatch(path.stem)
    if match is None:
        raise Unlabelled(f"name {path.name!r} does not follow EMO-DB SSTTTEV (e.g. 03a01Fa)")
    speaker, text, emotion, version = match.groups()
    for value, valid, field in ((speaker, SPEAKERS, "speaker"), (text, TEXTS, "text"), (emotion, EMOTIONS, "emotion")):
        if value not in valid:
            raise Unlabelled(f"{field} code {value!r} is not an EMO-DB code ({', '.join(valid)})")
    return Clip(
        path=path,
        corpus=CORPUS,
        clip_id=f"{CORPUS}:{path.stem}",
        speaker=f"{CORPUS}:{speaker}",
        gender=SPEAKERS[speaker],
        emotion=EMOTIONS[emotion],
        source_label=emotion,
        extra={"text": text, "version": version},
    )


LOADER = Loader(parse=parse)
