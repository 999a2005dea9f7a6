#!/usr/bin/env python3
"""Throughput and peak memory of the pipeline's stages as the corpus grows (1x, 4x, 16x).

For each size, writes a synthetic corpus as a custom corpus (``custom.bench``: a CSV label
table and 16 kHz WAV clips of harmonic tones in noise, 1.5-2.5 s) with ``--clips`` x size
clips (default 1,540, the demo corpus's size, so 16x is 24,640 clips), then runs the real
stages, each as ``python -m pipeline.<stage>`` in its own process in a temporary project
(params.yaml of the repo with the corpus, ``augment.copies``, ``train.epochs`` swapped in):
ingest -> split -> augment -> features (original, then augmented) -> train (``cnn``) ->
evaluate (its test speakers).

Per stage it records wall seconds, clips per second, and the peak resident memory of the
largest process of the stage (``wait4`` ``ru_maxrss``, which covers worker processes). For
``train`` the rate is training clips x epochs per second (the scaler pass and validation
included). Prints one JSON line per size and stage and a Markdown table at the end; with
``--json`` writes all of it to a file.

    python benchmarks/scale.py                          # 1x, 4x, 16x (about 35 min on 2 cores)
    python benchmarks/scale.py --sizes 1 4 --clips 500  # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["ingest", "split", "augment", "features", "features_augmented", "train", "evaluate"]
EMOTIONS = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
SR = 16000


def write_corpus(folder: Path, n_clips: int, *, clips_per_speaker: int = 77, seed: int = 0) -> int:
    """``n_clips`` clips of ``n_clips // clips_per_speaker`` speakers (half female), each
    speaker's clips spread over the 7 emotions; returns the number written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rows = []
    for i in range(n_clips):
        spk = i // clips_per_speaker
        emotion = EMOTIONS[i % len(EMOTIONS)]
        t = np.arange(int(SR * rng.uniform(1.5, 2.5))) / SR
        f0 = (110 if spk % 2 else 210) * (1 + 0.1 * EMOTIONS.index(emotion) / 7) * (1 + 0.02 * np.sin(2 * np.pi * 3 * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        y = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.1 + 0.01 * rng.standard_normal(len(t))
        path = f"s{spk:04d}/{i:06d}.wav"
        (folder / path).parent.mkdir(exist_ok=True)
        sf.write(folder / path, y.astype(np.float32), SR, subtype="PCM_16")
        rows.append(f"{path},spk{spk:04d},{emotion},{'female' if spk % 2 else 'male'}")
    (folder / "labels.csv").write_text("path,speaker,emotion,sex\n" + "\n".join(rows) + "\n")
    return n_clips


def project(tmp: Path, corpus_dir: Path, *, copies: int, epochs: int) -> Path:
    """A project folder whose params.yaml is the repo's with the bench corpus swapped in."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["corpora"] = ["bench"]
    params["custom"] = {"bench": {"table": "labels.csv", "labels": {}}}
    params["data"]["dir"] = str(corpus_dir.parent)
    params["split"]["assign"] = {}
    params["augment"]["copies"] = copies
    for model in params["models"].values():   # a model taking more copies than made would stop the run
        if isinstance(model, dict) and model.get("copies") is not None:
            model["copies"] = min(model["copies"], copies)
    params["train"]["epochs"] = epochs
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp


def run_stage(args: list[str], *, cwd: Path, log) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of the largest process, stdout) of ``python -m`` args."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=log,
                            text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}); see {log.name}")
    return seconds, usage.ru_maxrss / 1024, out


def measure(size: int, base_clips: int, *, copies: int, epochs: int, work: Path, stages: list[str]) -> list[dict]:
    n = size * base_clips
    corpus = work / f"x{size}" / "data" / "bench"
    if not (corpus / "labels.csv").is_file():   # a kept folder (--keep) is reused as it is
        write_corpus(corpus, n)
    proj = project(corpus.parent.parent, corpus, copies=copies, epochs=epochs)
    n_aug = 0
    results = []
    with open(proj / "stages.log", "a") as log:
        for stage, args in [("ingest", ["pipeline.ingest"]), ("split", ["pipeline.split"]),
                            ("augment", ["pipeline.augment", "--corpus", "bench"]),
                            ("features", ["pipeline.features", "--corpus", "bench", "--source", "original"]),
                            ("features_augmented", ["pipeline.features", "--corpus", "bench", "--source", "augmented"]),
                            ("train", ["pipeline.train", "--model", "cnn", "--live", "dvclive/cnn",
                                       "--curves", "plots/cnn/curves.png"]),
                            ("evaluate", ["pipeline.evaluate", "--model", "cnn", "--metrics", "metrics/cnn.json",
                                          "--plots", "plots/cnn"])]:
            if stage not in stages:
                continue
            seconds, peak, out = run_stage(args, cwd=proj, log=log)
            if stage == "augment":
                n_aug = int(re.search(r"= (\d+) clips", out).group(1))
            if stage == "features_augmented" and not n_aug:
                n_aug = len(pd.read_csv(proj / "data" / "augmented" / "bench" / "augmented.csv"))
            clips = n_aug if stage in ("augment", "features_augmented") else n
            row = {"size": size, "clips": n, "stage": stage, "seconds": round(seconds, 1), "peak_rss_mib": round(peak)}
            if stage == "train":
                m = re.search(r"train cnn: (\d+) training clips", out)
                e = re.search(r"(\d+) epochs in", out)
                train_clips, run_epochs = int(m.group(1)), int(e.group(1))
                row.update(train_clips=train_clips, epochs=run_epochs,
                           clips_per_s=round(train_clips * run_epochs / seconds, 1))
            elif stage == "evaluate":
                n_test = json.loads((proj / "metrics" / "cnn.json").read_text())["n"]
                row.update(stage_clips=n_test, clips_per_s=round(n_test / seconds, 1))
            else:
                row.update(stage_clips=clips, clips_per_s=round(clips / seconds, 1))
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


def table(results: list[dict]) -> str:
    sizes = sorted({r["size"] for r in results})
    stages = list(dict.fromkeys(r["stage"] for r in results))
    by = {(r["size"], r["stage"]): r for r in results}
    head = "| stage | " + " | ".join(f"{s}x ({by[(s, stages[0])]['clips']} clips): clips/s, peak MiB" for s in sizes) + " |"
    lines = [head, "|---|" + "---:|" * len(sizes)]
    for st in stages:
        lines.append(f"| {st} | " + " | ".join(f"{by[(s, st)]['clips_per_s']}, {by[(s, st)]['peak_rss_mib']}"
                                                for s in sizes) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--clips", type=int, default=1540, help="clips at 1x (default: the demo corpus's 1,540)")
    ap.add_argument("--copies", type=int, default=1, help="augment.copies (default 1)")
    ap.add_argument("--epochs", type=int, default=2, help="train.epochs (default 2)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one); a "
                                               "size already there is reused, e.g. with --stages train evaluate")
    ap.add_argument("--stages", nargs="+", default=STAGES, choices=STAGES, help="default: all, in pipeline order")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        results = [r for s in args.sizes for r in measure(s, args.clips, copies=args.copies, epochs=args.epochs,
                                                           work=work, stages=args.stages)]
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
