"""Stage ``augment``: seeded audiomentations copies of every selected clip, used for training only.

For one corpus (``--corpus``), reads ``splits/<corpus>.csv`` and writes ``augment.copies``
augmented versions of each clip (additive noise, time stretch, pitch shift, time shift; each
with its own probability and range from params) as 16-bit FLAC at ``base.sample_rate`` under
``augment.out/<corpus>/``, with ``augmented.csv`` listing every copy with its source clip id,
speaker, corpus, label and the source's holdout partition (``split``).

Copies exist for validation and test clips too because the fold protocols (``protocol``
stage) train on speakers that the holdout split keeps for testing. No copy is ever
evaluated: a training run takes the copies of its own training clips and nothing else
(:func:`pipeline.train.training_rows`), so a test speaker's copies never reach a model that
is scored on that speaker. Each copy is seeded from (``base.seed``, source clip id, copy
number), so the output does not depend on order, worker count or which clips are
augmented, and the same params give the same bytes.

Run: ``python -m pipeline.augment --corpus ravdess``.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import zlib
from multiprocessing import Pool
from pathlib import Path
from typing import Mapping

import audiomentations as A
import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from pipeline import audio, params as P, stage
from pipeline.schema import NOISE_COLOURS, Augment

NOISE_DECAY_DB = dict(zip(NOISE_COLOURS, (0.0, -3.01, -6.02), strict=True))   # spectral slope, dB per octave
COLUMNS = ["clip_id", "source_id", "path", "corpus", "speaker", "gender", "emotion", "label", "split",
           "duration_s", "copy", "applied"]


def build_augmenter(cfg: Mapping) -> A.Compose:
    """An audiomentations chain from the ``augment`` params section, validated against
    :class:`pipeline.schema.Augment` (a bad value is a :class:`~pipeline.params.ParamsError`)."""
    cfg = P.check(Augment, cfg, key="augment")
    noise, stretch, pitch, shift = (cfg[k] for k in ("noise", "time_stretch", "pitch_shift", "time_shift"))
    colour = noise["colour"]
    if colour == "white":
        noise_t = A.AddGaussianSNR(min_snr_db=noise["min_snr_db"], max_snr_db=noise["max_snr_db"], p=noise["p"])
    else:
        decay = NOISE_DECAY_DB[colour]
        noise_t = A.AddColorNoise(min_snr_db=noise["min_snr_db"], max_snr_db=noise["max_snr_db"],
                                  min_f_decay=decay, max_f_decay=decay, p=noise["p"])
    return A.Compose([
        A.TimeStretch(min_rate=stretch["min_rate"], max_rate=stretch["max_rate"], leave_length_unchanged=False,
                      p=stretch["p"]),
        A.PitchShift(min_semitones=pitch["min_semitones"], max_semitones=pitch["max_semitones"], p=pitch["p"]),
        A.Shift(min_shift=-shift["max_fraction"], max_shift=shift["max_fraction"], shift_unit="fraction",
                rollover=False, p=shift["p"]),
        noise_t,
    ])


def augment_clip(y: np.ndarray, *, sr: int, augmenter: A.Compose, seed: int, clip_id: str, copy: int) -> tuple[np.ndarray, str]:
    """One augmented copy of ``y`` (float32, (n,)), seeded by (seed, clip_id, copy).

    audiomentations draws from the global ``random`` and ``numpy.random`` generators, so both
    are seeded right before the call. Returns the copy, clipped to [-1, 1], and the names of
    the transforms that were applied.
    """
    key = [seed, zlib.crc32(clip_id.encode()), copy]
    np.random.seed(np.random.SeedSequence(key).generate_state(1)[0])
    random.seed(str(key))
    out = augmenter(samples=np.ascontiguousarray(y, dtype=np.float32), sample_rate=sr)
    applied = "+".join(t.__class__.__name__ for t in augmenter.transforms if t.parameters.get("should_apply"))
    return np.clip(out, -1.0, 1.0).astype(np.float32), applied or "none"


_STATE: dict = {}


def _init(cfg: Mapping, sr: int, seed: int, out_dir: Path) -> None:
    _STATE.update(augmenter=build_augmenter(cfg), sr=sr, seed=seed, out_dir=out_dir)


def _work(job: tuple[dict, int]) -> dict:
    row, copy = job
    try:
        y = audio.load(row["path"], sr=_STATE["sr"])
    except audio.AudioError as err:   # changed since ingest checked it: reported, the run goes on
        return {"error": str(err), "clip_id": row["clip_id"]}
    out, applied = augment_clip(y, sr=_STATE["sr"], augmenter=_STATE["augmenter"], seed=_STATE["seed"],
                                clip_id=row["clip_id"], copy=copy)
    path = _STATE["out_dir"] / f"{row['clip_id'].split(':', 1)[1]}__aug{copy}.flac"
    sf.write(path, out, _STATE["sr"], subtype="PCM_16", format="FLAC")
    return {**{k: row[k] for k in ("corpus", "speaker", "gender", "emotion", "label")},
            "clip_id": f"{row['clip_id']}#aug{copy}", "source_id": row["clip_id"], "path": str(path), "split": row["split"],
            "duration_s": round(len(out) / _STATE["sr"], 4), "copy": copy, "applied": applied}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    args = ap.parse_args(argv)
    params = P.load()
    base, cfg = P.section(params, "base"), P.section(params, "augment")
    seed, sr = base["seed"], base["sample_rate"]
    interim = Path(P.section(params, "data")["interim"])
    copies, workers = cfg["copies"], cfg["workers"]
    out_dir = Path(cfg["out"]) / args.corpus
    if out_dir.exists():
        for old in out_dir.iterdir():
            old.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)

    rows = pd.read_csv(interim / "splits" / f"{args.corpus}.csv", dtype={"source_label": str})
    jobs = [(row, k) for row in rows.to_dict("records") for k in range(1, copies + 1)]
    t0 = time.perf_counter()
    with Pool(workers, initializer=_init, initargs=(cfg, sr, seed, out_dir)) as pool:
        made = list(tqdm(pool.imap(_work, jobs, chunksize=8), total=len(jobs), desc=f"augment {args.corpus}", unit="clip"))
    failed = sorted({m["error"] for m in made if "error" in m})
    for line in failed:
        print(f"augment: {line}", file=sys.stderr)
    table = pd.DataFrame([m for m in made if "error" not in m], columns=COLUMNS)
    table.to_csv(out_dir / "augmented.csv", index=False)
    seconds = time.perf_counter() - t0
    print(f"augment {args.corpus}: {len(rows)} clips x {copies} copies = {len(table)} clips, {len(failed)} source clips "
          f"failed to decode "
          f"({int((table.split == 'train').sum())} of them of holdout training clips), {table.duration_s.sum() / 3600:.2f} h, "
          f"{seconds:.1f} s ({len(table) / max(seconds, 1e-9):.0f} clips/s)")
    return 0


if __name__ == "__main__":
    stage.run(main, name="augment")
