#!/usr/bin/env python3
"""Throughput of the project's feature extraction, comparable with the reference recipe.

Runs what the ``features`` stage runs for each file, in one process: ``audio.load`` at
``base.sample_rate`` -> ``extraction.prepare`` -> ``extraction.extract`` in batches of
``--batch`` clips, with the ``features`` settings of ``--params``. Prints one JSON line with
the keys of ``/work/shared/bench/seed_features.py``:

    {"files": N, "audio_seconds": S, "cpu_seconds": C, "wall_seconds": W, "audio_s_per_cpu_s": S/C}

``audio_seconds`` counts the audio actually analysed, ``min(duration, features.seconds)`` per
file. ``cpu_seconds`` is ``time.process_time()`` (every thread of the process counts). The
clock includes one-time setup, as the reference's does. ``extract`` runs BLAS on
one thread by itself; ``OPENBLAS_NUM_THREADS=1`` also limits everything else. Run from the
project root (``benchmarks/compare.sh`` runs the reference next to it):

    python benchmarks/features.py FILE_LIST [--batch 64] [--params params.yaml]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `pipeline` importable from the project root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from pipeline import audio, params as P, stage  # noqa: E402
from pipeline.extraction import FeatureConfig, extract, prepare  # noqa: E402


def run(paths: list[str], *, config: FeatureConfig, batch: int) -> dict:
    """Extract features of ``paths`` in batches; returns the timing summary.

    One-time setup (filter banks) is inside the timer, as the reference's is.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    seconds, failed = 0.0, 0
    waves: list[np.ndarray] = []
    valid: list[int] = []
    for i, path in enumerate(paths):
        try:
            y = audio.load(path, sr=config.sr)
        except audio.AudioError as err:
            print(f"skipped: {err}", file=sys.stderr)
            failed += 1
        else:
            seconds += min(len(y), config.n_samples) / config.sr
            y_fixed, n_valid = prepare(y, config=config)
            waves.append(y_fixed)
            valid.append(n_valid)
        if waves and (len(waves) == batch or i == len(paths) - 1):
            extract(np.stack(waves), np.asarray(valid), config=config)
            waves, valid = [], []
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"files": len(paths) - failed, "audio_seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
           "wall_seconds": round(wall, 2), "audio_s_per_cpu_s": round(seconds / max(cpu, 1e-9), 2)}
    if failed:
        out["failed"] = failed
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file_list", help="text file with one audio path per line")
    ap.add_argument("--batch", type=int, default=64, help="clips per extract() call (default 64)")
    ap.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    args = ap.parse_args(argv)
    if args.batch < 1:
        ap.error(f"--batch={args.batch} must be >= 1")
    params = P.load(args.params)
    config = FeatureConfig.from_params(P.require(params, "features"), sr=int(P.require(params, "base.sample_rate")))
    paths = [line.strip() for line in Path(args.file_list).read_text().splitlines() if line.strip()]
    if not paths:
        ap.error(f"{args.file_list}: no paths listed")
    print(json.dumps(run(paths, config=config, batch=args.batch)))
    return 0


if __name__ == "__main__":
    stage.run(main, name="benchmarks/features.py", allocator="keep")   # as the features stage runs
