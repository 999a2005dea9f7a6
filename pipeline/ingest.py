"""Stage ``ingest``: find every corpus under ``data.dir``, label each file, validate its audio.

Writes the faithful catalogue of every valid clip (``manifest.csv``, and one file per corpus
under ``manifests/`` so later stages can cache per corpus) and a readable report: counts per
corpus x emotion x speaker, and every rejected or excluded file with its reason. One bad
file never stops the run and never gets a guessed label. Class selection is not done here.

Run: ``python -m pipeline.ingest`` (reads ``params.yaml``: ``corpora``, ``data``, ``ingest``).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from multiprocessing import Pool
from pathlib import Path
from typing import Mapping

import pandas as pd
from tqdm import tqdm

from pipeline import audio, params as P, stage
from pipeline.corpora import Clip, Rejection, custom as custom_corpus, scan, unusable_entries
from pipeline.schema import folder_key

COLUMNS = ["clip_id", "path", "corpus", "speaker", "gender", "emotion", "source_label",
           "duration_s", "sample_rate", "channels", "format", "md5", "extra"]


def find_corpus_dir(data_dir: Path, corpus: str) -> Path | None:
    """The sub-folder of ``data_dir`` holding ``corpus``; case, '-' and '_' are ignored
    (``CREMA-D``, ``emo_db`` and ``RAVDESS`` are found). None when there is none."""
    if not data_dir.is_dir():
        return None
    folders = [c for c in sorted(data_dir.iterdir()) if c.is_dir() and folder_key(c.name) == folder_key(corpus)]
    if len(folders) > 1 and not any(c.name == corpus for c in folders):
        raise P.ParamsError(f"data.dir={str(data_dir)!r} holds {len(folders)} folders for corpus {corpus!r} "
                            f"({', '.join(c.name for c in folders)}); keep one, or name one exactly {corpus!r}")
    return next((c for c in folders if c.name == corpus), folders[0] if folders else None)


def validate(clip: Clip, *, min_duration_s: float, silence_dbfs: float,
             max_duration_s: float | None = None) -> dict | Rejection:
    """Decode ``clip.path`` fully and return its manifest row, or a Rejection with the reason
    (not decodable, truncated, NaN, infinite or constant samples, too short, too long, silent)."""
    try:
        raw = Path(clip.path).read_bytes()
        y, sr = audio.read(clip.path, max_duration_s=max_duration_s)
    except audio.AudioError as err:
        return Rejection(clip.path, clip.corpus, str(err))
    except OSError as err:
        return Rejection(clip.path, clip.corpus, f"{clip.path}: cannot be read ({err.strerror or err}); "
                                                 "check its permissions and the disk")
    duration_s = y.shape[0] / sr
    if duration_s < min_duration_s:
        return Rejection(clip.path, clip.corpus,
                         f"{clip.path}: too short ({duration_s:.3f} s < ingest.min_duration_s={min_duration_s})")
    peak = audio.peak_dbfs(y)
    if peak < silence_dbfs:
        return Rejection(clip.path, clip.corpus,
                         f"{clip.path}: silent (peak {peak:.1f} dBFS < ingest.silence_dbfs={silence_dbfs})")
    fmt = audio.info(clip.path).format
    row = {k: v for k, v in asdict(clip).items() if k != "extra"}
    row.update(path=str(clip.path), duration_s=round(duration_s, 4), sample_rate=sr, channels=y.shape[1],
               format=fmt, md5=hashlib.md5(raw).hexdigest(),
               extra=";".join(f"{k}={v}" for k, v in sorted(clip.extra.items())))
    return row


def _validate_star(args):
    clip, kwargs = args
    return validate(clip, **kwargs)


def scan_all(data_dir: Path, corpora: list[str], options: Mapping,
             custom: Mapping | None = None) -> tuple[list[Clip], list[Rejection], dict]:
    """Run each corpus's loader (``options``: the ``ingest`` section; ``custom``: the ``custom``
    section, corpora of your own); returns clips, rejections and {corpus: folder or None}."""
    clips, rejections, found = [], [], {}
    for corpus in corpora:
        folder = find_corpus_dir(data_dir, corpus)
        found[corpus] = folder
        if folder is not None:
            if corpus in (custom or {}):
                c, r = custom_corpus.scan(corpus, folder, **custom[corpus])
            else:
                c, r = scan(corpus, folder, options=options.get(corpus) or {})
            clips += c
            rejections += r + unusable_entries(folder, corpus=corpus)
    return clips, rejections, found


def report(manifest: pd.DataFrame, rejections: list[Rejection], found: dict, data_dir: Path) -> str:
    """A readable Markdown ingest report."""
    lines = [f"# Ingest report\n\nData folder: `{data_dir}`\n", "| corpus | folder | clips | speakers | hours | rejected | excluded |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for corpus, folder in found.items():
        m = manifest[manifest.corpus == corpus]
        rej = sum(r.corpus == corpus and r.kind == "rejected" for r in rejections)
        exc = sum(r.corpus == corpus and r.kind == "excluded" for r in rejections)
        where = f"`{folder}`" if folder else "not found (skipped)"
        lines.append(f"| {corpus} | {where} | {len(m)} | {m.speaker.nunique()} | {m.duration_s.sum() / 3600:.2f} | {rej} | {exc} |")
    for corpus in found:
        m = manifest[manifest.corpus == corpus]
        if m.empty:
            continue
        speaker = (m.speaker.str.split(":", n=1).str[1] + " (" + m.gender.str[0] + ")").rename("speaker (sex)")
        table = pd.crosstab(speaker, m.emotion, margins=True, margins_name="total")
        lines += [f"\n## {corpus}: clips per speaker x emotion\n", table.to_markdown()]
        if len(unknown := sorted(m[m.gender == "unknown"].speaker.str.split(":", n=1).str[1].unique())):
            lines.append(f"\nSpeakers without sex ({len(unknown)}; kept, and the split interleaves them as their "
                         f"own group): {', '.join(unknown)}")
        rates = m.sample_rate.value_counts().sort_index()
        lines.append("\nSample rates: " + ", ".join(f"{r} Hz x {n}" for r, n in rates.items())
                     + "; channels: " + ", ".join(f"{c} x {n}" for c, n in m.channels.value_counts().sort_index().items())
                     + "; containers: " + ", ".join(f"{c} x {n}" for c, n in m.format.value_counts().sort_index().items()))
    for kind in ("rejected", "excluded"):
        rows = [r for r in rejections if r.kind == kind]
        lines.append(f"\n## {kind.capitalize()} files ({len(rows)})\n")
        lines += [f"- {r.corpus}: `{_relative(r.path, data_dir)}`: {r.reason.removeprefix(f'{r.path}: ')}"
                  for r in rows] or ["None."]
    return "\n".join(lines) + "\n"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def main() -> int:
    params = P.load()
    corpora, data, cfg = P.section(params, "corpora"), P.section(params, "data"), P.section(params, "ingest")
    data_dir, interim = Path(data["dir"]), Path(data["interim"])
    kwargs = {k: cfg[k] for k in ("min_duration_s", "max_duration_s", "silence_dbfs")}
    workers = cfg["workers"]
    if not data_dir.is_dir():
        raise P.ParamsError(f"data.dir={str(data_dir)!r} is not a folder; point it at a folder holding "
                            "ravdess/ tess/ savee/ cremad/ emodb/ (or run `dvc repro demo` for the demo)")

    t0 = time.perf_counter()
    clips, rejections, found = scan_all(data_dir, corpora, cfg, custom=P.section(params, "custom"))
    jobs = [(c, kwargs) for c in clips]
    with Pool(workers) as pool:
        results = list(tqdm(pool.imap(_validate_star, jobs, chunksize=16), total=len(jobs), desc="ingest", unit="file"))
    rows = [r for r in results if isinstance(r, dict)]
    rejections += [r for r in results if isinstance(r, Rejection)]
    manifest = pd.DataFrame(rows, columns=COLUMNS).sort_values("clip_id", kind="stable").reset_index(drop=True)

    (interim / "manifests").mkdir(parents=True, exist_ok=True)
    manifest.to_csv(interim / "manifest.csv", index=False)
    for corpus in corpora:
        manifest[manifest.corpus == corpus].to_csv(interim / "manifests" / f"{corpus}.csv", index=False)
    (interim / "ingest_report.md").write_text(report(manifest, rejections, found, data_dir))
    seconds = time.perf_counter() - t0
    n_rej = sum(r.kind == "rejected" for r in rejections)
    n_exc = len(rejections) - n_rej
    print(f"ingest: {len(manifest)} clips, {manifest.duration_s.sum() / 3600:.2f} h of audio, {n_rej} rejected, "
          f"{n_exc} excluded, {seconds:.1f} s ({len(jobs) / max(seconds, 1e-9):.0f} files/s); "
          f"report: {interim / 'ingest_report.md'}")
    return 0


if __name__ == "__main__":
    stage.run(main, name="ingest")
