"""TESS, Toronto Emotional Speech Set (Dupuis & Pichora-Fuller 2010): ``OAF_back_angry.wav``.

``SPEAKER_word_emotion``: two female speakers, OAF (older, 64) and YAF (younger, 26), 200
target words, emotions angry, disgust, fear, happy, neutral, ps (pleasant surprise) and sad.
Folder names differ across releases (``OAF_Fear``, ``YAF_pleasant_surprised``, ...), so
speaker and emotion come from the file name only. The parser tolerates case, stray spaces
and repeated underscores, and spelled-out emotion variants; a name still not parseable is
rejected. One file of the widely used release is misnamed and corrected by :data:`ERRATA`.
"""
from __future__ import annotations

import re
from pathlib import Path

from pipeline.corpora.base import Clip, Loader, Unlabelled

CORPUS = "tess"
SPEAKERS = {"OAF": 64, "YAF": 26}  # speaker -> age in years (corpus documentation)
EMOTIONS = {
    "angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
    "neutral": "neutral", "ps": "surprised", "sad": "sad",
}
# Spelled-out variants of the TESS emotion codes (lower case, words joined by "_").
ALIASES = {
    "anger": "angry", "disgusted": "disgust", "fearful": "fear", "happiness": "happy",
    "pleasant_surprise": "ps", "pleasant_surprised": "ps", "surprise": "ps", "surprised": "ps",
    "sadness": "sad",
}
# Known misnamed files (normalised stem -> correct stem). "OA_bite_neutral.wav" sits in
# OAF_neutral/ of the widely used "TESS Toronto emotional speech set data" release (Kaggle);
# the Dataverse release's MANIFEST lists the same recording as OAF_bite_neutral.wav.
ERRATA = {"oa_bite_neutral": "OAF_bite_neutral"}

_SEPARATORS = re.compile(r"[\s_]+")


def parse(path: Path) -> Clip:
    """Turn one TESS file name into a :class:`Clip`, or raise :class:`Unlabelled`."""
    tokens = [t for t in _SEPARATORS.split(path.stem) if t]
    erratum = ERRATA.get("_".join(tokens).lower())
    if erratum is not None:
        tokens = erratum.split("_")
    if len(tokens) < 3:
        raise Unlabelled(f"name {path.name!r} does not follow TESS SPEAKER_word_emotion (e.g. OAF_back_angry)")
    speaker, word, written = tokens[0].upper(), tokens[1].lower(), "_".join(tokens[2:])
    if speaker not in SPEAKERS:
        raise Unlabelled(f"speaker {tokens[0]!r} is not a TESS speaker ({', '.join(SPEAKERS)})")
    if not word.isalpha():
        raise Unlabelled(f"target word {tokens[1]!r} is not a word")
    code = written.lower().replace("-", "_")
    code = ALIASES.get(code, code)
    if code not in EMOTIONS:
        raise Unlabelled(f"emotion {written!r} is not a TESS emotion ({', '.join(EMOTIONS)} or a spelled-out variant)")
    extra: dict = {"word": word, "age": SPEAKERS[speaker]}
    if erratum is not None:
        extra["erratum"] = f"named {path.stem!r}, read as {erratum!r}"
    return Clip(
        path=path,
        corpus=CORPUS,
        clip_id=f"{CORPUS}:{speaker}_{word}_{code}",
        speaker=f"{CORPUS}:{speaker}",
        gender="female",
        emotion=EMOTIONS[code],
        source_label=written,
        extra=extra,
    )


LOADER = Loader(parse=parse)
