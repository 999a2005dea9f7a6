"""RAVDESS (Livingstone & Russo 2018): ``MM-VV-EE-II-SS-RR-AA.wav``.

Seven two-digit fields: modality (01 full-AV, 02 video-only, 03 audio-only), vocal channel
(01 speech, 02 song), emotion (01-08), intensity (01 normal, 02 strong; neutral has no
strong), statement (01, 02), repetition (01, 02) and actor (01-24; odd male, even female).
Only audio-only files are clips; video modalities (including ``.mp4`` files) are reported
as excluded, and songs are excluded unless ``include_song`` is true.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipeline.corpora.base import Clip, Loader, Unlabelled
from pipeline.params import ParamsError

CORPUS = "ravdess"
VIDEO_SUFFIXES = (".mp4",)
MODALITIES = {"01": "full-AV", "02": "video-only", "03": "audio-only"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}
SONG_EMOTIONS = ("01", "02", "03", "04", "05", "06")  # sung: no disgust, no surprised
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
REPETITIONS = ("01", "02")
ACTORS = tuple(f"{n:02d}" for n in range(1, 25))

_NAME = re.compile(r"(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})")


def parse(path: Path, *, include_song: bool = False) -> Clip:
    """Turn one RAVDESS file name into a :class:`Clip`, or raise :class:`Unlabelled`."""
    match = _NAME.fullmatch(path.stem)
    if match is None:
        raise Unlabelled(f"name {path.name!r} does not follow RAVDESS MM-VV-EE-II-SS-RR-AA (seven 2-digit fields)")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    for value, valid, field in (
        (modality, MODALITIES, "modality"), (channel, VOCAL_CHANNELS, "vocal channel"),
        (emotion, EMOTIONS, "emotion"), (intensity, INTENSITIES, "intensity"),
        (statement, STATEMENTS, "statement"), (repetition, REPETITIONS, "repetition"), (actor, ACTORS, "actor"),
    ):
        if value not in valid:
            raise Unlabelled(f"{field} code {value!r} is out of range ({min(valid)}-{max(valid)})")
    if emotion == "01" and intensity == "02":
        raise Unlabelled("strong intensity (02) with neutral emotion (01); RAVDESS has no strong neutral")
    if channel == "02" and emotion not in SONG_EMOTIONS:
        raise Unlabelled(f"song (vocal channel 02) with emotion {emotion} ({EMOTIONS[emotion]}); "
                         "RAVDESS songs have no such emotion")
    if modality != "03":
        raise Unlabelled(f"video modality {modality} ({MODALITIES[modality]}); only audio-only (03) files are used",
                         kind="excluded")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        raise Unlabelled(f"audio-only modality 03 in a {path.suffix} video file; RAVDESS audio-only files are .wav")
    if channel == "02" and not include_song:
        raise Unlabelled("song (vocal channel 02); set ingest.ravdess.include_song: true to use it", kind="excluded")
    return Clip(
        path=path,
        corpus=CORPUS,
        clip_id=f"{CORPUS}:{path.stem}",
        speaker=f"{CORPUS}:{actor}",
        gender="male" if int(actor) % 2 else "female",
        emotion=EMOTIONS[emotion],
        source_label=emotion,
        extra={
            "intensity": INTENSITIES[intensity],
            "statement": statement,
            "repetition": repetition,
            "vocal_channel": VOCAL_CHANNELS[channel],
        },
    )


def prepare(root: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Validate ``ingest.ravdess`` (``include_song``: true or false) into ``parse``'s keywords."""
    if not isinstance(options["include_song"], bool):
        raise ParamsError(f"params.yaml: ingest.ravdess.include_song={options['include_song']!r} must be true or false")
    return {"include_song": options["include_song"]}


def videos(root: Path) -> list[Path]:
    """The ``.mp4`` files under ``root``: labelled like audio, then reported as excluded (video modalities)."""
    return [p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]


LOADER = Loader(parse=parse, options={"include_song": False}, prepare=prepare, extra_files=videos)
