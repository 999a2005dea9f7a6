#!/usr/bin/env python3
"""Peak memory of the features stage against corpus size: it should be set by the chunk size.

Writes N synthetic 3-second clips (16 kHz WAV) to a temporary folder and runs the features
stage's own :func:`pipeline.features.run` on them with the ``features`` settings of
params.yaml, then prints one JSON line with the peak resident memory of the main process and
of the largest worker process (``getrusage`` ``ru_maxrss``), in MiB.

    python benchmarks/features_memory.py --clips 500
    python benchmarks/features_memory.py --clips 4000      # 8x the clips: same peak
    python benchmarks/features_memory.py --clips 4000 --chunk-size 1024   # the peak follows this

Each size must run in its own process (peaks are per process lifetime).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import soundfile as sf  # noqa: E402

from pipeline import params as P  # noqa: E402
from pipeline.extraction import FeatureConfig  # noqa: E402
from pipeline.features import run  # noqa: E402


def write_clips(folder: Path, n: int, *, sr: int = 16000, seconds: float = 3.0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    rows = []
    for i in range(n):
        y = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.02 * rng.standard_normal(len(t))
        path = folder / f"clip{i:06d}.wav"
        sf.write(path, y.astype(np.float32), sr, subtype="PCM_16")
        rows.append({"clip_id": f"bench:{i}", "path": str(path), "duration_s": seconds})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, required=True)
    ap.add_argument("--chunk-size", type=int, default=None, help="default: features.chunk_size")
    ap.add_argument("--workers", type=int, default=None, help="default: features.workers")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = P.load(args.params)
    cfg = P.require(params, "features")
    config = FeatureConfig.from_params(cfg, sr=int(P.require(params, "base.sample_rate")))
    chunk = args.chunk_size or int(cfg["chunk_size"])
    workers = args.workers or int(cfg["workers"])
    with tempfile.TemporaryDirectory() as tmp:
        table = write_clips(Path(tmp), args.clips)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        summary = run(table, Path(tmp) / "out", config=config, dtype=cfg["dtype"], chunk_size=chunk,
                      workers=workers, desc="features")
        out_mb = sum(f.stat().st_size for f in (Path(tmp) / "out").iterdir()) / 2**20
    print(json.dumps({"clips": args.clips, "chunk_size": chunk, "workers": workers,
                      "output_mib": round(out_mb, 1), "main_peak_rss_mib_before": round(base, 1),
                      "main_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "worker_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
                      "seconds": round(summary["seconds"], 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
