"""Demo corpus: synthetic stand-ins for RAVDESS, TESS, SAVEE, CREMA-D and EmoDB.

The real corpora cannot be downloaded here, so ``python -m pipeline.demo`` writes
source-filter "speech" under ``demo.out`` in each corpus's own file names and layout. Every
clip is synthesised from its canonical emotion (pitch level, range and contour, loudness,
syllable rate, spectral tilt, breathiness, jitter); every speaker has its own pitch, vocal
tract length and idiosyncratic way of expressing each emotion, so speaker identity is a real
nuisance. The output is a pure function of ``demo`` and ``base.seed``: each file is seeded
from (seed, its path), so it does not depend on the order of generation.
"""
from __future__ import annotations

import csv
import shutil
import time
import zlib
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np
import soundfile as sf
from scipy import signal
from tqdm import tqdm

from pipeline import stage
from pipeline.corpora import cremad, emodb, ravdess, savee, tess
from pipeline.params import ParamsError, check, load, require, section
from pipeline.schema import CORPORA, Demo   # the demo stands in for every built-in corpus
from pipeline.vocab import EMOTIONS

LABELS: dict[str, dict[str, str]] = {m.CORPUS: m.EMOTIONS for m in (ravdess, tess, savee, cremad, emodb)}
"""Each corpus's own emotion code -> canonical emotion: the loaders' tables, so a demo file parses."""
TESS_WORDS = ("back bar base bath bean beg bite boat bone book bought burn cab calm came cause "
              "chain chair chalk chat check cheek chief choice cool dab date dead death deep dime "
              "dip ditch dodge dog doll door fail fall far fat fit five food gaze get gin").split()
TESS_FOLDERS = {("OAF", "fear"): "OAF_Fear", ("OAF", "ps"): "OAF_Pleasant_surprise",
                ("OAF", "sad"): "OAF_Sad", ("YAF", "ps"): "YAF_pleasant_surprised"}
CREMAD_LEVELS = {"LO": 0.6, "MD": 1.0, "HI": 1.4, "XX": 1.0}  # level -> emotional strength
MAX_SPEAKERS = {"ravdess": len(ravdess.ACTORS), "tess": len(tess.SPEAKERS), "savee": len(savee.SPEAKERS),
                "cremad": len(cremad.ACTORS), "emodb": len(emodb.SPEAKERS)}
MAX_CLIPS = {"ravdess": 8, "tess": len(TESS_WORDS), "savee": min(savee.SENTENCES.values()),
             "cremad": len(cremad.SENTENCES), "emodb": len(emodb.TEXTS) * 3}

# Emotion profiles: f0 ratio to the speaker's habitual pitch, accent range and overall
# slope (semitones), level (dB), syllable rate (Hz), source low-pass corner (Hz, low =
# breathy/soft, high = pressed), aspiration noise ratio, jitter (fraction), formant ratio.
KEYS = ("f0", "range_st", "slope_st", "gain_db", "rate_hz", "tilt_hz", "breath", "jitter", "formant")
LOG_KEYS = [0, 5, 8]  # ratios and frequencies vary on a log scale
PROFILES = {
    "neutral":   (1.00, 2.5, -2.0, 0.0, 4.0, 1800, 0.05, 0.010, 1.00),
    "calm":      (0.95, 1.8, -2.0, -3.0, 3.6, 1300, 0.08, 0.008, 0.99),
    "happy":     (1.22, 5.5, -1.0, 3.0, 4.6, 2800, 0.05, 0.014, 1.05),
    "sad":       (0.92, 1.5, -3.5, -5.0, 3.1, 1000, 0.12, 0.018, 0.96),
    "angry":     (1.28, 5.0, -3.0, 7.0, 4.8, 4600, 0.025, 0.020, 1.07),
    "fearful":   (1.38, 3.5, 1.0, 1.0, 5.4, 2000, 0.10, 0.030, 1.02),
    "disgust":   (0.97, 3.5, -2.5, 0.0, 3.3, 2200, 0.07, 0.016, 0.98),
    "surprised": (1.30, 7.0, 4.0, 4.0, 4.3, 2600, 0.06, 0.014, 1.04),
    "boredom":   (0.90, 1.0, -1.0, -3.0, 3.2, 1300, 0.07, 0.010, 0.98),
}
TABLE = np.array([PROFILES[e] for e in EMOTIONS], dtype=float)
TABLE[:, LOG_KEYS] = np.log(TABLE[:, LOG_KEYS])
SPREAD = np.array([0.06, 1.0, 1.0, 2.0, 0.4, 0.25, 0.02, 0.005, 0.02])  # one natural s.d. per key
SPEAKER_SD, CLIP_SD = 0.4, 0.6  # multiples of SPREAD: speaker idiosyncrasy, clip-to-clip
VOWELS_HZ = np.array([  # adult male F1..F5 of /a i u e o ae er/
    [730, 1090, 2440, 3400, 4400], [270, 2290, 3010, 3500, 4500], [300, 870, 2240, 3300, 4300],
    [530, 1840, 2480, 3500, 4500], [570, 840, 2410, 3300, 4300], [660, 1720, 2410, 3400, 4400],
    [490, 1350, 1690, 3300, 4400]], dtype=float)
BANDWIDTHS_HZ = np.array([80.0, 100.0, 140.0, 200.0, 260.0])


class Item(NamedTuple):
    """One file to synthesise."""

    path: str       # relative to demo.out, e.g. "savee/ALL/DC_a01.wav"
    speaker: str    # the corpus's own speaker id
    sex: str        # male | female
    emotion: str    # canonical emotion
    strength: float  # emotional intensity; 1.0 is normal


def cremad_demographics(*, n_speakers: int, seed: int) -> list[dict[str, Any]]:
    """Rows of ``VideoDemographics.csv`` for actors 1001.., half male and half female."""
    rng = np.random.default_rng([seed, zlib.crc32(b"cremad/VideoDemographics.csv")])
    sexes = rng.permutation(["Male", "Female"] * ((n_speakers + 1) // 2))[:n_speakers]
    races = ("Caucasian", "African American", "Asian", "Unknown")
    return [{"ActorID": 1001 + i, "Age": int(rng.integers(20, 75)), "Sex": str(sex),
             "Race": races[rng.integers(4)], "Ethnicity": ("Not Hispanic", "Hispanic")[rng.random() < 0.2]}
            for i, sex in enumerate(sexes)]


def plan(corpus: str, *, n_speakers: int, clips: int, seed: int) -> list[Item]:
    """All files of one corpus: ``clips`` per (speaker, emotion) in the corpus's naming."""
    items, labels = [], LABELS[corpus]
    if corpus == "ravdess":  # actors: odd male, even female; neutral has no strong intensity
        for a in range(1, n_speakers + 1):
            for code, emo in labels.items():
                combos = [(i, s, r) for r in (1, 2) for s in (1, 2) for i in ((1,) if code == "01" else (1, 2))]
                items += [Item(f"ravdess/Actor_{a:02d}/03-01-{code}-{i:02d}-{s:02d}-{r:02d}-{a:02d}.wav",
                               f"{a:02d}", "male" if a % 2 else "female", emo, 1.0 if i == 1 else 1.4)
                          for i, s, r in combos[:clips]]
    elif corpus == "tess":
        for spk in tuple(tess.SPEAKERS)[:n_speakers]:
            for code, emo in labels.items():
                folder = TESS_FOLDERS.get((spk, code), f"{spk}_{code}")
                items += [Item(f"tess/{folder}/{spk}_{w}_{code}.wav", spk, "female", emo, 1.0)
                          for w in TESS_WORDS[:clips]]
    elif corpus == "savee":
        for spk in savee.SPEAKERS[:n_speakers]:
            for code, emo in labels.items():
                items += [Item(f"savee/ALL/{spk}_{code}{j:02d}.wav", spk, "male", emo, 1.0)
                          for j in range(1, clips + 1)]
    elif corpus == "cremad":  # sentence IEO at three levels, the others unspecified (XX)
        for row in cremad_demographics(n_speakers=n_speakers, seed=seed):
            for code, emo in labels.items():
                combos = ([("IEO", "XX")] if code == "NEU" else [("IEO", lv) for lv in ("LO", "MD", "HI")])
                combos += [(s, "XX") for s in cremad.SENTENCES[1:]]
                items += [Item(f"cremad/AudioWAV/{row['ActorID']}_{s}_{code}_{lv}.wav", str(row["ActorID"]),
                               row["Sex"].lower(), emo, CREMAD_LEVELS[lv]) for s, lv in combos[:clips]]
    elif corpus == "emodb":
        for spk in list(emodb.SPEAKERS)[:n_speakers]:
            for code, emo in labels.items():
                items += [Item(f"emodb/wav/{spk}{emodb.TEXTS[i % 10]}{code}{'abc'[i // 10]}.wav",
                               spk, emodb.SPEAKERS[spk], emo, 1.0) for i in range(clips)]
    return items


def speaker_voice(*, sex: str, rng: np.random.Generator) -> tuple[float, float, np.ndarray]:
    """Habitual f0 (Hz), formant scale (short vocal tract > 1) and style offsets.

    The offsets, shape (len(EMOTIONS), len(KEYS)), are the speaker's habits (shared by all
    emotions) plus an idiosyncratic way of expressing each emotion.
    """
    f0_hz = (115.0 if sex == "male" else 210.0) * np.exp(rng.normal(0.0, 0.08))
    formant_scale = (1.0 if sex == "male" else 1.17) * np.exp(rng.normal(0.0, 0.035))
    sd = SPEAKER_SD * SPREAD
    return f0_hz, formant_scale, rng.normal(0.0, sd, TABLE.shape) + rng.normal(0.0, sd)


def clip_style(*, emotion: str, strength: float, f0_hz: float, formant_scale: float,
               offsets: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """One clip's values of :data:`KEYS`; ``strength`` scales the distance from neutral."""
    e, n = EMOTIONS.index(emotion), EMOTIONS.index("neutral")
    v = TABLE[n] + strength * (TABLE[e] - TABLE[n]) + offsets[e] + rng.normal(0.0, CLIP_SD * SPREAD)
    v[LOG_KEYS] = np.exp(v[LOG_KEYS])
    v[[1, 4, 6, 7]] = np.maximum(v[[1, 4, 6, 7]], [0.0, 1.5, 0.0, 0.0])  # range, rate, breath, jitter
    style = dict(zip(KEYS, v.tolist(), strict=True))
    style["f0"] *= f0_hz
    style["formant"] *= formant_scale
    return style


def f0_track(*, n_samples: int, sr: int, f0_hz: float, range_st: float, slope_st: float,
             jitter: float, accents_s: np.ndarray, span_s: tuple[float, float],
             rng: np.random.Generator) -> np.ndarray:
    """Per-sample f0 (Hz), shape (n_samples,): a slope over ``span_s`` plus pitch accents
    of up to ``range_st`` semitones at ``accents_s`` and cycle-scale jitter."""
    t = np.arange(int(n_samples / sr * 200) + 2) / 200.0  # 5 ms frames
    pos = np.clip((t - span_s[0]) / (span_s[1] - span_s[0]), 0.0, 1.0)
    heights = range_st * rng.uniform(0.2, 1.0, len(accents_s))
    st = slope_st * (pos - 0.5) + heights @ np.exp(-0.5 * ((t - accents_s[:, None]) / 0.07) ** 2)
    f0 = f0_hz * 2.0 ** (st / 12.0) * (1.0 + jitter * rng.standard_normal(len(t)))
    return np.interp(np.arange(n_samples) / sr, t, f0)


def glottal_source(*, f0_hz: np.ndarray, sr: int, open_quotient: float, shimmer: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Rosenberg glottal flow derivative, shape like ``f0_hz``; amplitude varies per cycle."""
    phase = np.cumsum(f0_hz) / sr
    cycle = phase.astype(np.int64)
    theta, tp, tn = phase - cycle, 0.65 * open_quotient, 0.35 * open_quotient
    flow = np.where(theta < tp, 0.5 * (1.0 - np.cos(np.pi * theta / tp)),
                    np.where(theta < tp + tn, np.cos(0.5 * np.pi * (theta - tp) / tn), 0.0))
    flow *= 1.0 + shimmer * rng.standard_normal(cycle[-1] + 1)[cycle]
    return np.diff(flow, prepend=0.0)


def resonators(*, freqs_hz: np.ndarray, bandwidths_hz: np.ndarray, sr: int) -> np.ndarray:
    """Cascade of second-order resonators with unit gain at 0 Hz, as ``sos`` (k, 6);
    resonances above 0.45 * sr are dropped."""
    keep = freqs_hz < 0.45 * sr
    r = np.exp(-np.pi * bandwidths_hz[keep] / sr)
    a1, a2 = -2.0 * r * np.cos(2.0 * np.pi * freqs_hz[keep] / sr), r**2
    zeros = np.zeros_like(r)
    return np.column_stack([1.0 + a1 + a2, zeros, zeros, np.ones_like(r), a1, a2])


def synthesize(*, style: Mapping[str, float], duration_s: float, sr: int,
               rng: np.random.Generator) -> np.ndarray:
    """One utterance, shape (round(duration_s * sr),), float in [-1, 1].

    Syllables (vowels with optional fricative onsets) fill the time between leading and
    trailing silence, separated by short pauses; ``style`` holds the :data:`KEYS`.
    """
    n = int(round(duration_s * sr))
    lead, trail = rng.uniform(0.08, 0.22, 2)
    speech_s = duration_s - lead - trail
    n_syl = max(2, int(round(style["rate_hz"] * speech_s)))
    slots = np.cumsum(np.concatenate([[0.0], rng.gamma(6.0, size=n_syl)]))
    edges = lead + speech_s * slots / slots[-1]  # syllable slot boundaries, s
    ends = edges[1:] - np.diff(edges) * rng.uniform(0.1, 0.35, n_syl)  # rest of a slot is a pause
    f0 = f0_track(n_samples=n, sr=sr, f0_hz=style["f0"], range_st=style["range_st"],
                  slope_st=style["slope_st"], jitter=style["jitter"],
                  accents_s=(edges[:-1] + ends) / 2, span_s=(lead, lead + speech_s), rng=rng)
    src = glottal_source(f0_hz=f0, sr=sr, open_quotient=min(0.45 + 2.0 * style["breath"], 0.85),
                         shimmer=4.0 * style["jitter"], rng=rng)
    p = np.exp(-2.0 * np.pi * style["tilt_hz"] / sr)
    src = signal.lfilter([1.0 - p], [1.0, -p], src)
    src = src / (np.std(src) + 1e-12) + style["breath"] * rng.standard_normal(n)
    y = np.zeros(n)
    for a_s, b_s, stress in zip(edges[:-1], ends, rng.uniform(0.55, 1.0, n_syl), strict=True):
        a, b = int(a_s * sr), int(b_s * sr)
        freqs = VOWELS_HZ[rng.integers(len(VOWELS_HZ))] * style["formant"] * np.exp(rng.normal(0, 0.04, 5))
        t = np.linspace(0.0, 1.0, b - a)
        env = t**0.4 * (1.0 - t) ** 0.8
        y[a:b] += stress / env.max() * env * signal.sosfilt(
            resonators(freqs_hz=freqs, bandwidths_hz=BANDWIDTHS_HZ, sr=sr), src[a:b])
        if rng.random() < 0.5:  # fricative onset: band-passed noise just before the vowel
            m = int(rng.uniform(0.03, 0.07) * sr)
            fc = np.array([min(rng.uniform(2500, 5500), 0.4 * sr)])
            burst = signal.sosfilt(resonators(freqs_hz=fc, bandwidths_hz=fc / 3, sr=sr), rng.standard_normal(m))
            lo = max(a - m // 2, 0)
            y[lo:lo + m] += 0.3 * stress * np.hanning(m)[: n - lo] * burst[: n - lo] / (np.std(burst) + 1e-12)
    voiced = np.abs(y) > 1e-4
    y *= 10 ** ((-24.0 + style["gain_db"]) / 20) / (np.sqrt(np.mean(y[voiced] ** 2)) + 1e-12)
    y += 10 ** (-78 / 20) * rng.standard_normal(n)  # recording noise floor
    return y / max(1.0, np.abs(y).max() / 0.98)


def validate(demo: Mapping[str, Any]) -> dict[str, Any]:
    """Check the ``demo`` params section and add ``corpora`` (in :data:`CORPORA` order).

    Raises :class:`ParamsError` naming the key, the value and the rule.
    """
    demo = check(Demo, demo, key="demo")   # keys and types; the tables' corpora and ranges below
    corpora = sorted(demo["speakers"])
    if not corpora:
        raise ParamsError("params.yaml: demo.speakers is empty; give at least one corpus")
    for key in ("speakers", "clips_per_emotion", "sample_rates"):
        table = sorted(demo[key])
        if set(table) - set(CORPORA):
            raise ParamsError(f"params.yaml: demo.{key} names unknown corpus {sorted(set(table) - set(CORPORA))[0]!r}; "
                              f"use some of {list(CORPORA)}")
        if table != corpora:
            raise ParamsError(f"params.yaml: demo.{key} lists {table} but demo.speakers lists {corpora}; "
                              "give every corpus all three values")
    for corpus in corpora:
        for key, lo, hi in (("speakers", 1, MAX_SPEAKERS[corpus]), ("clips_per_emotion", 1, MAX_CLIPS[corpus]),
                            ("sample_rates", 8000, 192000)):
            v = demo[key][corpus]
            if not lo <= v <= hi:
                raise ParamsError(f"params.yaml: demo.{key}.{corpus}={v!r} must be an integer in [{lo}, {hi}]")
    return {**demo, "corpora": [c for c in CORPORA if c in corpora]}


def generate(*, out: str | Path, demo: Mapping[str, Any], seed: int, progress: bool = True) -> dict[str, float]:
    """Write the demo corpora into ``out`` (removed first); return clips, minutes, seconds."""
    start, demo, out = time.perf_counter(), validate(demo), Path(out)
    if out.exists():
        stray = sorted(p.name for p in out.iterdir() if p.name not in CORPORA)
        if not out.is_dir() or stray:
            raise FileExistsError(f"{out}: refusing to delete a folder that holds more than the demo corpora "
                                  f"(found {stray[:3]}); set demo.out to a new or demo-only folder")
        shutil.rmtree(out)
    items = [(c, it) for c in demo["corpora"] for it in plan(
        c, n_speakers=demo["speakers"][c], clips=demo["clips_per_emotion"][c], seed=seed)]
    samples = 0.0
    for corpus, it in tqdm(items, desc="demo", unit="clip", disable=not progress):
        f0_hz, formant_scale, offsets = speaker_voice(  # cheap: a few draws from the speaker's seed
            sex=it.sex, rng=np.random.default_rng([seed, zlib.crc32(f"{corpus}/{it.speaker}".encode())]))
        rng = np.random.default_rng([seed, zlib.crc32(it.path.encode())])
        style = clip_style(emotion=it.emotion, strength=it.strength, f0_hz=f0_hz,
                           formant_scale=formant_scale, offsets=offsets, rng=rng)
        sr = demo["sample_rates"][corpus]
        y = synthesize(style=style, duration_s=rng.uniform(*demo["duration_s"]), sr=sr, rng=rng)
        path = out / it.path
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.round(y * 32767).astype(np.int16), sr, subtype="PCM_16")
        samples += len(y) / sr
    if "cremad" in demo["corpora"]:
        rows = cremad_demographics(n_speakers=demo["speakers"]["cremad"], seed=seed)
        with (out / "cremad" / "VideoDemographics.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return {"clips": len(items), "minutes": samples / 60, "seconds": time.perf_counter() - start}


def main() -> None:
    params = load()
    raw, seed = require(params, "demo"), section(params, "base")["seed"]
    demo = validate(raw)
    summary = generate(out=demo["out"], demo=raw, seed=seed)
    print(f"demo: {summary['clips']} clips, {summary['minutes']:.1f} audio minutes in "
          f"{len(demo['corpora'])} corpora -> {demo['out']} ({summary['seconds']:.1f} s)")


if __name__ == "__main__":
    stage.run(main, name="demo")
