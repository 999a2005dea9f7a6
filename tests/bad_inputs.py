"""The bad-input table: every kind of input a user may feed the pipeline, and what each gets.

One row per kind, shared by ``test_ingest.py`` (a RAVDESS folder holding every row),
``test_cli.py`` (``ser predict``) and ``test_webapp.py`` (``POST /predict``). Each row says what
the ingest stage, the command line and the web app answer: ``None`` where the input is
accepted (or predicted), a regular expression that the one-line reason must match otherwise;
``NA`` where the input cannot reach that surface (a folder cannot be uploaded). The README's
"Bad input" table lists the same rows (``test_readme_lists_every_bad_input`` checks it).

Every file is made here from a seed (nothing is read from outside the test's folder); the
clips that should be accepted are demo-voice speech (``fakes.speech``).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from fakes import SR, speech

NA = "n/a"
LONG_S = 700.0          # over infer.max_duration_s and ingest.max_duration_s (600 s)


def _wav(y: np.ndarray, *, sr: int = SR, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def flac_without_length(y: np.ndarray, *, sr: int = SR) -> bytes:
    """A FLAC whose STREAMINFO gives no total length (as a streaming encoder writes it)."""
    data = bytearray(_wav(y, sr=sr, fmt="FLAC"))
    at = 8 + 10 + 3                 # "fLaC", block header, 10 bytes of block/frame sizes, rate/channels/bps
    data[at] &= 0xF0                # the 36-bit total-samples field: its top 4 bits ...
    data[at + 1:at + 5] = b"\0\0\0\0"   # ... and the other 32
    return bytes(data)


def _noise(seconds: float, *, channels: int = 1, seed: int = 0) -> np.ndarray:
    y = 0.1 * np.random.default_rng(seed).standard_normal((int(seconds * SR), channels))
    return (y[:, 0] if channels == 1 else y).astype(np.float32)


def _chord(seconds: float) -> np.ndarray:
    """Music-like: a sequence of three-note chords with harmonics and note changes."""
    t = np.arange(int(seconds * SR)) / SR
    notes = [220.0, 277.2, 329.6, 246.9, 311.1, 370.0]
    y = np.zeros_like(t)
    for i, start in enumerate(np.arange(0, seconds, 0.5)):
        part = (t >= start) & (t < start + 0.5)
        for f in (notes[i % 6], notes[(i + 2) % 6] * 1.5):
            y[part] += sum(np.sin(2 * np.pi * k * f * t[part]) / k for k in (1, 2, 3))
    return (0.1 * y).astype(np.float32)


def _tone(seconds: float, hz: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def _hum(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.1 * sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 6))).astype(np.float32)


def long_square(seconds: float, *, sr: int = 8000) -> np.ndarray:
    """A quiet square wave whose level changes every 4096 samples: FLAC packs each block into a
    few bytes (2 h at 16 kHz: 0.36 MB), as a decompression bomb would."""
    return (0.05 * ((np.arange(int(seconds * sr)) // 4096) % 2 * 2 - 1)).astype(np.float32)


def _with_nan(y: np.ndarray) -> np.ndarray:
    y = y.copy()
    y[[100, 5000, 9000]] = np.nan
    return y


@dataclass(frozen=True)
class BadInput:
    """One kind of input. ``make(path)`` writes it at ``path`` (a file, link or folder)."""

    id: str
    what: str
    make: Callable[[Path], None]
    ingest: str | None
    cli: str | None
    web: tuple[int, str] | None | str


def _bytes(data: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data() if callable(data) else data)


def _dangling(path: Path) -> None:
    path.symlink_to(path.with_name("gone.wav"))


def _folder(path: Path) -> None:
    path.mkdir()
    (path / "readme.txt").write_text("a folder, not audio\n")


CASES: list[BadInput] = [
    BadInput("speech", "a good clip (demo voice, 2 s, 16-bit WAV)",
             _bytes(lambda: _wav(speech(2.0, seed=1))), None, None, None),
    BadInput("mp3_named_wav", "MP3 bytes named .wav", _bytes(lambda: _wav(speech(2.0, seed=2), fmt="MP3", subtype="MPEG_LAYER_III")),
             None, None, None),
    BadInput("flac_no_length", "FLAC whose header gives no length (streamed encoder)",
             _bytes(lambda: flac_without_length(speech(2.0, seed=3))), None, None, None),
    BadInput("six_channels", "6-channel 48 kHz speech", _bytes(lambda: _wav(np.repeat(speech(2.0, seed=4, sr=48000)[:, None], 6, 1), sr=48000)),
             None, None, None),
    BadInput("quiet_speech", "speech at -50 dBFS RMS (judged after loudness normalisation)",
             _bytes(lambda: _wav(speech(2.0, seed=5) * 10 ** (-50 / 20) / np.sqrt(np.mean(speech(2.0, seed=5) ** 2)))),
             None, None, None),
    BadInput("music", "chords with harmonics and note changes (the detector calls some of it speech: a known limit)",
             _bytes(lambda: _wav(_chord(3.0))), None, None, None),
    BadInput("noise", "3 s of white noise", _bytes(lambda: _wav(_noise(3.0))),
             None, r"no speech detected \(0\.\d\d s of speech", (422, r"no speech detected")),
    BadInput("noise_6ch", "10 s of 6-channel noise", _bytes(lambda: _wav(_noise(10.0, channels=6, seed=1))),
             None, r"no speech detected", (422, r"no speech detected")),
    BadInput("hum", "3 s of 50 Hz mains hum with harmonics", _bytes(lambda: _wav(_hum(3.0))),
             None, r"no speech detected", (422, r"no speech detected")),
    BadInput("tone", "3 s of a 1 kHz sine", _bytes(lambda: _wav(_tone(3.0, 1000.0))),
             None, r"no speech detected", (422, r"no speech detected")),
    BadInput("text", "a text file named .wav", _bytes(b"these are meeting notes, not audio\n" * 20),
             r"not audio libsndfile can decode", r"not audio libsndfile can decode", (415, r"not audio libsndfile can decode")),
    BadInput("empty", "an empty file (0 bytes)", _bytes(b""),
             r"zero-length file", r"zero-length file", (422, r"empty upload")),
    BadInput("header_only", "a WAV cut inside its header (30 bytes)", _bytes(lambda: _wav(speech(1.0))[:30]),
             r"not audio libsndfile can decode", r"not audio libsndfile can decode", (415, r"not audio libsndfile can decode")),
    BadInput("truncated", "a WAV cut inside its data", _bytes(lambda: _wav(speech(1.0))[:-8000]),
             r"truncated: header says 16000 frames, decoded 12000", r"truncated", (422, r"truncated")),
    BadInput("too_short", "50 ms of speech", _bytes(lambda: _wav(speech(1.0)[: SR // 20])),
             r"too short \(0\.050 s", r"too short \(0\.050 s\)", (422, r"too short \(0\.050 s\)")),
    BadInput("silent", "1 s of digital silence", _bytes(lambda: _wav(np.zeros(SR, np.float32))),
             r"silent \(peak -inf dBFS", r"silent", (422, r"silent")),
    BadInput("inf", "a float WAV of +Inf samples", _bytes(lambda: _wav(np.full(SR, np.inf, np.float32), subtype="FLOAT")),
             r"infinite samples \(16,000 of 16,000\)", r"infinite samples", (422, r"infinite samples")),
    BadInput("nan", "a float WAV of NaN samples", _bytes(lambda: _wav(np.full(SR, np.nan, np.float32), subtype="FLOAT")),
             r"NaN samples \(16,000 of 16,000\)", r"NaN samples", (422, r"NaN samples")),
    BadInput("some_nan", "speech with 3 NaN samples (float WAV)", _bytes(lambda: _wav(_with_nan(speech(1.0)), subtype="FLOAT")),
             r"NaN samples \(3 of 16,000\)", r"NaN samples \(3 of", (422, r"NaN samples \(3 of")),
    BadInput("dc", "constant full-scale DC (what NaN becomes in 16-bit PCM)",
             _bytes(lambda: _wav(np.full(SR, 32767, np.int16))),
             r"constant signal \(DC at \+1\.000", r"constant signal \(DC", (422, r"constant signal \(DC")),
    BadInput("long", f"{LONG_S:g} s of audio (over max_duration_s)", _bytes(lambda: _wav(long_square(LONG_S), sr=8000, fmt="FLAC")),
             r"too long: 700\.0 s of audio \(from its header\); the limit is 600 s",
             r"too long: 700\.0 s", (413, r"too long: 700\.0 s")),
    BadInput("bomb", "a FLAC with no length that decodes to 700 s (a few KB)",
             _bytes(lambda: flac_without_length(long_square(LONG_S), sr=8000)),
             r"too long: more than 600 s", r"too long: more than 600 s", (413, r"too long: more than 600 s")),
    BadInput("dangling", "a dangling symbolic link named .wav", _dangling,
             r"dangling symbolic link", r"file not found", NA),
    BadInput("folder", "a folder named .wav", _folder,
             r"a folder named like an audio file", r"no audio files", NA),
]
