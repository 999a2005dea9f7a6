"""Stage ``functionals``: cached eGeMAPSv02 functionals (88 per clip) for one corpus.

The input of the classic baseline (``models.svm``). Kept apart from the ``features`` stage
because openSMILE costs about 50 times more CPU per clip than the whole single-STFT frame
feature set, and the deep models do not need it. Each clip is decoded, loudness-normalised
and cropped exactly as for the frame features (:func:`pipeline.extraction.prepare`, the
``features`` params), then :func:`pipeline.egemaps.egemaps` reads its real audio.

``--source original`` reads ``manifests/<corpus>.csv``; ``--source augmented`` the augment
stage's ``augmented.csv``. Output folder ``<features.out>/functionals/<source>/<corpus>/``:
``functionals.npy`` (n_clips, 88) float32, ``n_frames.npy`` (zeros, for the loader),
``index.csv`` (clip_id per row), ``meta.json`` (feature config, column names, failed clips
with reasons). A clip that fails to decode is listed there and counted, never dropped silently.

Run: ``python -m pipeline.functionals --corpus ravdess --source original``.
"""
from __future__ import annotations

import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from pipeline import egemaps, stage
from pipeline.sources import extraction_job, load_prepared
from pipeline.extraction import FeatureConfig

KIND = "functionals"


def folder(features_dir: Path, source: str, corpus: str) -> Path:
    """Where this stage writes ``corpus``'s functionals for ``source``."""
    return Path(features_dir) / KIND / source / corpus


def extract_files(paths: list[str], *, config: FeatureConfig) -> tuple[np.ndarray, list[int], list[str]]:
    """(functionals of the clips that loaded, their positions in ``paths``, one error line per other clip)."""
    loaded, errors = load_prepared(paths, config=config)
    rows = [egemaps.egemaps(y_fixed[None], np.array([n_valid]), sr=config.sr)[0] for _, y_fixed, n_valid in loaded]
    ok = [i for i, _, _ in loaded]
    width = len(egemaps.names())
    return (np.stack(rows) if rows else np.zeros((0, width), np.float32)), ok, errors


_CONFIG: list = []


def _init(config: FeatureConfig) -> None:
    threadpool_limits(1)
    _CONFIG[:] = [config]


def _work(job: tuple[int, list[str]]) -> tuple[int, np.ndarray, list[int], list[str]]:
    start, paths = job
    return (start, *extract_files(paths, config=_CONFIG[0]))


def run(table: pd.DataFrame, out_dir: Path, *, config: FeatureConfig, chunk_size: int, workers: int,
        desc: str) -> dict:
    """Functionals of every row of ``table`` (columns clip_id, path) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(table)
    x = np.zeros((n, len(egemaps.names())), np.float32)
    kept = np.zeros(n, dtype=bool)
    failed: list[str] = []
    paths = table.path.astype(str).tolist()
    jobs = [(s, paths[s:s + chunk_size]) for s in range(0, n, chunk_size)]
    t0 = time.perf_counter()
    if jobs:
        with Pool(workers, initializer=_init, initargs=(config,)) as pool, tqdm(total=n, desc=desc, unit="clip") as bar:
            for start, block, ok, errors in pool.imap(_work, jobs):
                rows = start + np.asarray(ok, dtype=int)
                x[rows] = block
                kept[rows] = True
                failed += errors
                for line in errors:
                    bar.write(f"functionals: {line}", file=sys.stderr)
                bar.update(len(jobs[start // chunk_size][1]))
    np.save(out_dir / f"{KIND}.npy", x[kept])
    np.save(out_dir / "n_frames.npy", np.zeros(int(kept.sum()), np.int32))
    table.loc[kept, ["clip_id"]].to_csv(out_dir / "index.csv", index=False)
    meta = {"config": config.to_dict(), "dtype": "float32", "feature_set": egemaps.FEATURE_SET,
            "names": egemaps.names(), "clips": int(kept.sum()), "failed": failed}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    return {"clips": int(kept.sum()), "failed": len(failed), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    job = extraction_job(argv, description=__doc__.splitlines()[0])
    out_dir = folder(Path(job.features["out"]), job.source, job.corpus)
    s = run(job.table, out_dir, config=job.config, chunk_size=job.features["chunk_size"], workers=job.features["workers"],
            desc=f"functionals {job.source}/{job.corpus}")
    print(f"functionals {job.source}/{job.corpus}: {s['clips']} clips, {s['failed']} failed, "
          f"{s['seconds']:.1f} s -> {out_dir}")
    return 0


if __name__ == "__main__":
    stage.run(main, name="functionals")
