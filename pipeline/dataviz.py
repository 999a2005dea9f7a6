"""Stage ``dataviz``: the data views before training (PNG, under ``plots/data/``).

Clips per emotion per corpus and per partition, the distribution of durations, and one
log-mel spectrogram per emotion (from the cached features, so it shows what models see).

Run: ``dvc repro dataviz`` (``python -m pipeline.dataviz --out plots/data``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pipeline import dataset, params as P, stage
from pipeline.plots import clips_per_emotion, durations, spectrograms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder of the PNG files (dvc.yaml: plots/data)")
    args = ap.parse_args(argv)
    params = P.load()
    interim = Path(P.section(params, "data")["interim"])
    features_dir = Path(P.section(params, "features")["out"])
    out = args.out
    manifest = pd.read_csv(interim / "manifest.csv", dtype={"source_label": str})
    rows = pd.read_csv(interim / "split.csv", dtype={"source_label": str})
    clips_per_emotion(rows, out / "clips_per_emotion.png")
    durations(manifest, out / "durations.png")
    examples = {}
    for label, g in rows.groupby("label", sort=False):
        f = dataset.load(g.sort_values("clip_id").head(1), features_dir=features_dir, kind="sequence")
        meta = dataset.feature_meta(features_dir, g.corpus.iloc[0])
        cols = [i for i, n in enumerate(meta["sequence_names"]) if n.startswith("logmel")]
        if cols:
            examples[f"{label} ({f.rows.clip_id.iloc[0]})"] = f.x[0][: f.n_frames[0]][:, cols].T  # (mels, frames)
    if examples:
        hop_s = meta["config"]["hop_length"] / meta["config"]["sr"]
        spectrograms(dict(sorted(examples.items())), out / "logmel_per_emotion.png", hop_s=hop_s)
    print(f"dataviz: {len(rows)} clips, {len(examples)} spectrograms -> {out}")
    return 0


if __name__ == "__main__":
    stage.run(main, name="dataviz", errors=(dataset.CacheError,))
