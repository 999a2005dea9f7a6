"""Stage ``features``: cached frame sequences and utterance vectors for one corpus.

``--source original`` reads ``manifests/<corpus>.csv`` (every valid clip, whatever the class
selection, so trying another class set extracts nothing); ``--source augmented`` reads the
augment stage's ``augmented.csv``, of it only the copies a model reading frame features trains on
(the largest ``models.<name>.copies`` of cnn, cnn_lstm and an SVM with ``input: utterance``;
:func:`pipeline.sources.copies_read`). Clips are decoded, mixed to mono, resampled to
``base.sample_rate``, loudness-normalised, cropped or padded to ``features.seconds``, and every
feature is derived from one STFT per clip (:mod:`pipeline.extraction`). Work is split in chunks
of ``features.chunk_size`` clips over ``features.workers`` processes and written straight
into memory-mapped arrays, so memory is set by the chunk size, not the corpus size.

Output folder ``<features.out>/<source>/<corpus>/``:

- ``sequence.npy``  (n_clips, n_frames, n_sequence_features), ``features.dtype``
- ``utterance.npy`` (n_clips, n_utterance_features), ``features.dtype``
- ``n_frames.npy``  (n_clips,) int32: frames that hold real audio (the rest is padding)
- ``index.csv``     clip_id per row, aligned with the arrays (join with ``split.csv`` on it)
- ``meta.json``     the feature config, column names, and clips that failed (with reasons)

Run: ``python -m pipeline.features --corpus ravdess --source original``.
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

from pipeline import stage, voice
from pipeline.sources import extraction_job, load_prepared
from pipeline.extraction import FeatureConfig, extract



def extract_files(paths: list[str], *, config: FeatureConfig) -> tuple[dict, list[int], list[str]]:
    """Load and featurise ``paths``; returns (arrays for the clips that loaded, their
    positions in ``paths``, one error line per clip that did not)."""
    loaded, errors = load_prepared(paths, config=config)
    if not loaded:
        return {}, [], errors
    ok, waves, valid = zip(*loaded, strict=True)
    return extract(np.stack(waves), np.asarray(valid), config=config), list(ok), errors


class RowWriter:
    """Append rows to a ``.npy`` file of shape ``(n, *row)`` with plain file writes.

    No memory map, so resident memory stays at one chunk whatever ``n`` is. If fewer than
    ``n`` rows were appended (clips that failed), :meth:`close` rewrites the file with the
    true row count, copying it block by block.
    """

    def __init__(self, path: Path, *, shape: tuple[int, ...], dtype: str, block_rows: int = 256):
        self.path, self.shape, self.dtype, self.block_rows = Path(path), shape, np.dtype(dtype), block_rows
        self.row_bytes = int(np.prod(shape[1:])) * self.dtype.itemsize
        self.file = self.path.open("wb")
        self.offset = self._header(self.file, shape[0])
        self.rows = 0

    def _header(self, f, n: int) -> int:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                 "fortran_order": False, "shape": (n,) + self.shape[1:]})
        return f.tell()

    def append(self, block: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.rows += len(block)

    def close(self) -> None:
        self.file.close()
        if self.rows == self.shape[0]:
            return
        tmp = self.path.with_suffix(".tmp")
        with self.path.open("rb") as src, tmp.open("wb") as dst:
            src.seek(self.offset)
            self._header(dst, self.rows)
            for _ in range(0, self.rows, self.block_rows):
                dst.write(src.read(self.block_rows * self.row_bytes))
        tmp.replace(self.path)


_CONFIG: list = []


def _init(config: FeatureConfig, dtype: str) -> None:
    threadpool_limits(1)  # one BLAS thread per worker process; the processes use the cores
    _CONFIG[:] = [config, dtype]


def _work(job: tuple[int, list[str]]) -> tuple[int, dict, list[int], list[str]]:
    start, paths = job
    config, dtype = _CONFIG
    arrays, ok, errors = extract_files(paths, config=config)
    for key in ("sequence", "utterance"):  # convert in the worker: half the bytes to send for float16
        if key in arrays:
            arrays[key] = arrays[key].astype(dtype)
    return start, arrays, ok, errors


def run(table: pd.DataFrame, out_dir: Path, *, config: FeatureConfig, dtype: str, chunk_size: int,
        workers: int, desc: str) -> dict:
    """Extract features of every row of ``table`` (columns clip_id, path, duration_s) into
    ``out_dir``; returns a summary dict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(table)
    if n == 0:  # a corpus that is absent, or no augmentation: empty arrays with the right shapes
        np.save(out_dir / "sequence.npy", np.zeros((0, config.n_frames, len(config.sequence_names())), dtype))
        np.save(out_dir / "utterance.npy", np.zeros((0, len(config.utterance_names())), dtype))
        np.save(out_dir / "n_frames.npy", np.zeros(0, np.int32))
        table[["clip_id"]].to_csv(out_dir / "index.csv", index=False)
        (out_dir / "meta.json").write_text(json.dumps({"config": config.to_dict(), "dtype": dtype, "clips": 0,
                                                       "sequence_names": config.sequence_names(),
                                                       "utterance_names": config.utterance_names(), "failed": []}, indent=1))
        return {"clips": 0, "failed": 0, "hours": 0.0, "seconds": 0.0}
    seq = RowWriter(out_dir / "sequence.npy", shape=(n, config.n_frames, len(config.sequence_names())), dtype=dtype)
    utt = RowWriter(out_dir / "utterance.npy", shape=(n, len(config.utterance_names())), dtype=dtype)
    n_frames = np.zeros(n, dtype=np.int32)
    kept = np.zeros(n, dtype=bool)
    failed: list[str] = []
    paths = table.path.astype(str).tolist()
    jobs = [(s, paths[s:s + chunk_size]) for s in range(0, n, chunk_size)]
    t0 = time.perf_counter()
    with Pool(workers, initializer=_init, initargs=(config, dtype)) as pool, tqdm(total=n, desc=desc, unit="clip") as bar:
        for start, arrays, ok, errors in pool.imap(_work, jobs):  # in order: rows are appended
            rows = start + np.asarray(ok, dtype=int)
            if len(rows):
                seq.append(arrays["sequence"])
                utt.append(arrays["utterance"])
                n_frames[rows] = arrays["n_frames"]
                kept[rows] = True
            failed += errors
            for line in errors:
                bar.write(f"features: {line}", file=sys.stderr)
            bar.update(len(jobs[start // chunk_size][1]))
    seq.close()
    utt.close()
    np.save(out_dir / "n_frames.npy", n_frames[kept])
    table.loc[kept, ["clip_id"]].to_csv(out_dir / "index.csv", index=False)
    seconds = time.perf_counter() - t0
    meta = {"config": config.to_dict(), "dtype": dtype, "sequence_names": config.sequence_names(),
            "utterance_names": config.utterance_names(), "clips": int(kept.sum()), "failed": failed}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    hours = float(table.duration_s[kept].sum()) / 3600
    return {"clips": int(kept.sum()), "failed": len(failed), "hours": hours, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    job = extraction_job(argv, description=__doc__.splitlines()[0])
    if "ge2e" in job.config.sequence:
        voice.weights()                 # a missing weights file stops the stage before any clip
    if job.selection:
        print(f"features {job.source}/{job.corpus}: {job.selection}")
    cfg = job.features
    out_dir = Path(cfg["out"]) / job.source / job.corpus
    s = run(job.table, out_dir, config=job.config, dtype=cfg["dtype"], chunk_size=cfg["chunk_size"], workers=cfg["workers"],
            desc=f"features {job.source}/{job.corpus}")
    print(f"features {job.source}/{job.corpus}: {s['clips']} clips, {s['hours']:.2f} h of audio, "
          f"{s['failed']} failed, {s['seconds']:.1f} s ({s['clips'] / max(s['seconds'], 1e-9):.0f} clips/s) -> {out_dir}")
    return 0


if __name__ == "__main__":
    stage.run(main, name="features", allocator="keep", errors=(voice.VoiceError,))
