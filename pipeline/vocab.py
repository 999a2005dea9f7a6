"""The one emotion vocabulary every corpus maps onto, and class selection.

Corpus loaders map their own codes onto :data:`EMOTIONS`; the ``split`` stage applies the
merges and the class list from params (``split.merge``, ``split.classes``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from pipeline.params import ParamsError

EMOTIONS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised", "boredom",
)


def check_selection(*, classes: Sequence[str], merge: Mapping[str, str]) -> list[str]:
    """Validate a class selection and return the classes in the given order.

    Raises :class:`ParamsError` for a label outside the vocabulary, a duplicate, or a merge
    whose target is not itself selected.
    """
    for label in list(classes) + list(merge) + list(merge.values()):
        if label not in EMOTIONS:
            raise ParamsError(f"params.yaml: emotion {label!r} is not in the vocabulary; use one of {list(EMOTIONS)}")
    if len(set(classes)) != len(classes):
        raise ParamsError(f"params.yaml: split.classes {list(classes)} lists a class twice")
    if len(classes) < 2:
        raise ParamsError("params.yaml: split.classes needs at least two classes")
    for src, dst in merge.items():
        if dst not in classes:
            raise ParamsError(f"params.yaml: split.merge maps {src!r} to {dst!r}, which is not in split.classes")
        if src in classes:
            raise ParamsError(f"params.yaml: {src!r} is both merged into {dst!r} and kept as a class; drop one")
    return list(classes)


def map_label(emotion: str, *, classes: Sequence[str], merge: Mapping[str, str]) -> str | None:
    """Return the training label for a canonical ``emotion``, or None if it is not selected."""
    label = merge.get(emotion, emotion)
    return label if label in classes else None
