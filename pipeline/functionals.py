"""Stages ``functionals``, ``compare`` and ``ge2e``: cached per-clip descriptors of one corpus's clips.

``--kind functionals`` (stage ``functionals``): openSMILE's eGeMAPSv02, 88 per clip; ``--kind
compare`` (stage ``compare``): ComParE_2016, 6,373 per clip; ``--kind ge2e`` (stage ``ge2e``): the
GE2E voice encoder's features, 256 per clip (:mod:`pipeline.voice`).

The input of the classic baseline (``models.svm``; ComParE: ``models.svm_compare``; GE2E: ``models.svm_ge2e``). Kept apart from the ``features`` stage
because openSMILE costs about 50 times more CPU per clip than the whole single-STFT frame
feature set, and the deep models do not need it. Each clip is decoded, loudness-normalised
and cropped exactly as for the frame features (:func:`pipeline.extraction.prepare`, the
``features`` params), then :func:`pipeline.descriptors.describe` reads its real audio.

``--source original`` reads ``manifests/<corpus>.csv``; ``--source augmented`` the augment
stage's ``augmented.csv``, of it only the copies the SVM reading these functionals trains on
(``models.svm.copies``, ``models.svm_compare.copies``, ``models.svm_ge2e.copies``;
:func:`pipeline.sources.copies_read`).
Output folder ``<features.out>/<kind>/<source>/<corpus>/``: ``<kind>.npy`` (n_clips, 88, 6373 or 256) float32, ``n_frames.npy`` (zeros, for the loader),
``index.csv`` (clip_id per row), ``meta.json`` (feature config, column names, failed clips
with reasons). A clip that fails to decode is listed there and counted, never dropped silently.

Run: ``python -m pipeline.functionals --corpus ravdess --source original [--kind compare]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from pipeline import descriptors, stage, voice
from pipeline.sources import extraction_job, load_prepared
from pipeline.extraction import FeatureConfig

KIND = "functionals"
KINDS = descriptors.KINDS   # functionals (eGeMAPS) | compare (ComParE_2016) | ge2e (voice encoder)


def folder(features_dir: Path, source: str, corpus: str, kind: str = KIND) -> Path:
    """Where this stage writes ``corpus``'s functionals of ``kind`` for ``source``."""
    return Path(features_dir) / kind / source / corpus


def extract_files(paths: list[str], *, config: FeatureConfig, kind: str = KIND) -> tuple[np.ndarray, list[int], list[str]]:
    """(functionals of the clips that loaded, their positions in ``paths``, one error line per other clip).
    The loaded clips go to :func:`pipeline.descriptors.describe` as one batch (the voice encoder runs
    every partial of the batch at once: 3x faster than clip by clip, the same values to the bit)."""
    loaded, errors = load_prepared(paths, config=config)
    ok = [i for i, _, _ in loaded]
    if not loaded:
        return np.zeros((0, len(descriptors.names(kind))), np.float32), ok, errors
    rows = descriptors.describe(np.stack([y for _, y, _ in loaded]), np.array([n for _, _, n in loaded]),
                                sr=config.sr, kind=kind)
    return rows, ok, errors


_CONFIG: list = []


def _init(config: FeatureConfig, kind: str) -> None:
    threadpool_limits(1)
    _CONFIG[:] = [config, kind]


def _work(job: tuple[int, list[str]]) -> tuple[int, np.ndarray, list[int], list[str]]:
    start, paths = job
    return (start, *extract_files(paths, config=_CONFIG[0], kind=_CONFIG[1]))


def run(table: pd.DataFrame, out_dir: Path, *, config: FeatureConfig, chunk_size: int, workers: int,
        desc: str, kind: str = KIND) -> dict:
    """Functionals of ``kind`` of every row of ``table`` (columns clip_id, path) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(table)
    x = np.zeros((n, len(descriptors.names(kind))), np.float32)
    kept = np.zeros(n, dtype=bool)
    failed: list[str] = []
    paths = table.path.astype(str).tolist()
    jobs = [(s, paths[s:s + chunk_size]) for s in range(0, n, chunk_size)]
    t0 = time.perf_counter()
    if jobs:
        with Pool(workers, initializer=_init, initargs=(config, kind)) as pool, tqdm(total=n, desc=desc, unit="clip") as bar:
            for start, block, ok, errors in pool.imap(_work, jobs):
                rows = start + np.asarray(ok, dtype=int)
                x[rows] = block
                kept[rows] = True
                failed += errors
                for line in errors:
                    bar.write(f"{kind}: {line}", file=sys.stderr)
                bar.update(len(jobs[start // chunk_size][1]))
    np.save(out_dir / f"{kind}.npy", x[kept])
    np.save(out_dir / "n_frames.npy", np.zeros(int(kept.sum()), np.int32))
    table.loc[kept, ["clip_id"]].to_csv(out_dir / "index.csv", index=False)
    meta = {"config": config.to_dict(), "dtype": "float32", "feature_set": descriptors.FEATURE_SETS[kind],
            "names": descriptors.names(kind), "clips": int(kept.sum()), "failed": failed}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    return {"clips": int(kept.sum()), "failed": len(failed), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--kind", choices=KINDS, default=KIND,
                        help="functionals: eGeMAPSv02 (stage functionals); compare: ComParE_2016 (stage compare); "
                             "ge2e: the GE2E voice encoder's features (stage ge2e)")

    job = extraction_job(argv, description=__doc__.splitlines()[0], options=options, stage_kind=lambda args: args.kind)
    kind = job.args.kind
    if kind == "ge2e":
        voice.weights()    # a missing weights file stops the stage before any clip, naming the install command
    if job.selection:
        print(f"{kind} {job.source}/{job.corpus}: {job.selection}")
    out_dir = folder(Path(job.features["out"]), job.source, job.corpus, kind)
    s = run(job.table, out_dir, config=job.config, chunk_size=job.features["chunk_size"], workers=job.features["workers"],
            desc=f"{kind} {job.source}/{job.corpus}", kind=kind)
    print(f"{kind} {job.source}/{job.corpus}: {s['clips']} clips, {s['failed']} failed, "
          f"{s['seconds']:.1f} s -> {out_dir}")
    return 0


if __name__ == "__main__":
    stage.run(main, name="functionals", errors=(voice.VoiceError,))
