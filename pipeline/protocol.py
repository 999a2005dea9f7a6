"""Stage ``protocol``: the research evaluation of one model (``--model``) under ``evaluate.protocol``.

- ``holdout``: the fixed split of ``split.csv`` (one fold);
- ``speaker_kfold``: ``evaluate.speaker_kfold.k`` speaker folds per corpus
  (:func:`pipeline.folds.speaker_folds`; ``k: loso`` for leave-one-speaker-out);
- ``cross_corpus``: for each corpus in ``evaluate.cross_corpus.test``, train on the
  ``train`` corpora (``all``: every other corpus) and test on it, over the classes they share
  (:func:`pipeline.folds.cross_corpus`).

Every fold is trained once per seed in ``train.seeds`` (``null``: ``base.seed`` only) with
:func:`pipeline.train.train_on`, the same recipe as the ``train`` stage: scaler, class
weights and augmented copies come from that fold's training speakers only, early stopping
uses its validation speakers (an SVM with ``models.<name>.train_on_val: true`` trains on them
instead), and its test speakers are checked unseen before scoring.
Under ``holdout`` the ``base.seed`` run *is* the ``train``/``evaluate`` stages' model, so its
predictions (``<evaluate.out>/<model>.csv``) are reused instead of training it again. An SVM
(:mod:`pipeline.models.svm`) does not depend on the seed (libsvm draws no random numbers
without its own probability estimates, and the Platt calibration folds are not shuffled), so
it is trained once per fold and its predictions stand for every seed (``runs.csv`` marks the
copies ``same_as_seed``); the summary over seeds is then that of identical runs, as it would be.

Writes ``<evaluate.protocol_out>/<model>/predictions.csv`` (seed, run, clip, p_<class>),
``runs.csv`` (one line per fold and seed: speakers, clip counts, epochs, best validation
UAR, test UAR, seconds), ``metrics/<model>_protocol.json`` (keys:
:func:`pipeline.folds.summarise`) and ``plots/<model>/protocol_runs.csv``.

``--model fusion`` (:mod:`pipeline.fuse`) trains nothing: per fold and seed it averages its
members' protocol predictions with ``models.fusion.weights``.

``--balanced <json>`` also scores the transductive speaker-balanced setting
(:func:`speaker_balanced`, :mod:`pipeline.balance`) from the same predictions, at no training
cost: ``<json>`` (the same keys, plus the speakers left unbalanced) and
``<evaluate.protocol_out>/<model>/predictions_balanced.csv``.

Run: ``dvc repro protocol@cnn`` (``dvc.yaml`` gives the output paths); or as an experiment:
``dvc exp run -S evaluate.protocol=speaker_kfold``.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from pipeline import balance, dataset, feed, folds, params as P, stage
from pipeline.metrics import prediction_table
from pipeline.schema import PROTOCOLS
from pipeline.speakers import LeakageError, check_unseen
from pipeline.vocab import EMOTIONS


@dataclass(frozen=True)
class Fold:
    """One training run's partition of the clips: ``rows.split`` in {train, val, test}."""

    name: str
    rows: pd.DataFrame
    labels: list[str]


def seeds_of(train: dict, *, base_seed: int) -> list[int]:
    """The seeds every fold is trained with: ``train.seeds`` (validated by
    :class:`pipeline.schema.Train`), or ``[base.seed]`` when it is null."""
    return list(train["seeds"]) if train["seeds"] is not None else [base_seed]


def plan(rows: pd.DataFrame, *, protocol: str, cfg: dict, classes: list[str], seed: int) -> list[Fold]:
    """The folds of ``protocol`` over ``rows`` (``split.csv``); ``cfg`` is the ``evaluate`` section."""
    P.choice(protocol, key="evaluate.protocol", valid=PROTOCOLS)
    if protocol == "holdout":
        return [Fold("holdout", rows.reset_index(drop=True), list(classes))]
    if protocol == "speaker_kfold":
        kf = P.require(cfg, "speaker_kfold")
        try:   # speaker_folds validates k and val_share
            frames = folds.speaker_folds(rows, k=kf.get("k"), seed=seed, val_share=kf.get("val_share"),
                                         train_only=list(kf.get("train_only") or []))
        except ValueError as err:
            raise P.ParamsError(f"params.yaml: evaluate.speaker_kfold: {err}") from err
        return [Fold(f"fold{int(f.fold.iloc[0])}", f.drop(columns="fold"), list(classes)) for f in frames]
    cc = P.require(cfg, "cross_corpus")
    available = sorted(rows.corpus.unique())
    tests = [cc["test"]] if isinstance(cc["test"], str) else list(cc["test"] or [])
    if not tests or any(t not in available for t in tests):
        raise P.ParamsError(f"params.yaml: evaluate.cross_corpus.test={cc['test']!r} must name corpora in the split "
                            f"{available}")
    out = []
    for test in tests:
        train = [c for c in available if c != test] if cc["train"] == "all" else [c for c in cc["train"] if c != test]
        try:
            frame, shared = folds.cross_corpus(rows, train=train, test=test, seed=seed, val_share=cc.get("val_share"))
        except ValueError as err:
            raise P.ParamsError(f"params.yaml: evaluate.cross_corpus: {err}") from err
        out.append(Fold(f"to_{test}", frame, [c for c in classes if c in shared]))
    return out


def score_fold(fold: Fold, *, name: str, model_params: dict, cfg: dict, seed: int, features_dir: Path,
               augment_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Train on one fold with one seed, predict its test speakers; (predictions, run log)."""
    from pipeline.train import best_val_uar, train_on

    t0 = time.perf_counter()
    trained = train_on(fold.rows, name=name, model_params=model_params, cfg=cfg, seed=seed, labels=fold.labels,
                       features_dir=features_dir, augment_dir=augment_dir, verbose=0)
    b = trained.bundle
    test_rows = fold.rows[fold.rows.split == "test"]
    check_unseen(test_rows.speaker.unique(), b.info["train_speakers"])
    sources = feed.open_inputs(test_rows, features_dir=features_dir, kinds=[b.input_kind])
    test = sources[b.input_kind]
    proba = feed.predict(b, sources)
    table = prediction_table(test.rows, proba, labels=b.labels, columns=("clip_id", "corpus", "speaker", "label"))
    log = {"train_clips": b.info["train_clips"], "train_speakers": len(b.info["train_speakers"]),
           "val_clips": trained.n_val, "test_clips": len(test.rows), "test_speakers": test.rows.speaker.nunique(),
           "missing_features": len(test.missing), "epochs": b.info["epochs_run"],
           "best_val_uar": best_val_uar(trained.history), "seconds": round(time.perf_counter() - t0, 1)}
    return table, log


def _score_job(job: tuple[int, Fold], kwargs: dict) -> tuple[pd.DataFrame, dict]:
    seed, fold = job
    return score_fold(fold, seed=seed, **kwargs)


def run_jobs(jobs: list[tuple[int, Fold]], *, workers: int, **kwargs):
    """:func:`score_fold` of each (seed, fold), in order: in this process, or in ``workers``
    fresh processes (``spawn``: TensorFlow is not fork-safe). Each run seeds itself and uses
    ``train.threads`` TensorFlow threads, so the results do not depend on ``workers``."""
    if workers <= 1 or len(jobs) <= 1:
        return (_score_job(job, kwargs) for job in jobs)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=stage.unmap_large_blocks)   # as the stage's own process runs
    futures = [pool.submit(_score_job, job, kwargs) for job in jobs]

    def ordered():
        try:
            for f in futures:
                yield f.result()
        finally:
            pool.shutdown(cancel_futures=True)
    return ordered()


def reused_holdout(predictions_csv: Path, fold: Fold) -> tuple[pd.DataFrame, dict]:
    """The evaluate stage's predictions as the holdout fold (same split, params and seed)."""
    table = pd.read_csv(predictions_csv)
    expected = set(fold.rows.clip_id[fold.rows.split == "test"])
    if set(table.clip_id) != expected:
        raise P.ParamsError(f"{predictions_csv} does not cover the holdout test clips of split.csv; "
                            "rerun `dvc repro` so evaluate follows the split")
    keep = ["clip_id", "corpus", "speaker", "label", "predicted", *(f"p_{c}" for c in fold.labels)]
    return table[keep], {"test_clips": len(table), "test_speakers": table.speaker.nunique(),
                         "reused": str(predictions_csv)}


def member_predictions(members: list[str], *, protocol_out: Path, seeds: list[int],
                       fold_list: list[Fold]) -> dict[str, pd.DataFrame]:
    """Each fusion member's protocol predictions (``<protocol_out>/<member>/predictions.csv``),
    only the runs of ``seeds`` x ``fold_list``."""
    runs = [f.name for f in fold_list]
    tables = {}
    for m in members:
        path = protocol_out / m / "predictions.csv"
        if not path.is_file():
            raise P.ParamsError(f"{path}: no protocol predictions of fusion member {m!r}; run `dvc repro protocol@{m}`")
        t = pd.read_csv(path)
        tables[m] = t[t.seed.isin(seeds) & t.run.isin(runs)].reset_index(drop=True)
    return tables


def fused_runs(members: list[str], weights: list[float], *, protocol_out: Path, seeds: list[int],
               fold_list: list[Fold]) -> tuple[list[pd.DataFrame], list[dict]]:
    """The fusion's protocol predictions from its members' (same folds, seeds and clips):
    per (seed, fold), the weighted mean of the members' probabilities."""
    from pipeline.bundle import fuse_probabilities

    tables = member_predictions(members, protocol_out=protocol_out, seeds=seeds, fold_list=fold_list)
    out, logs = [], []
    for seed in seeds:
        for fold in fold_list:
            parts = []
            for m, t in tables.items():
                part = t[(t.seed == seed) & (t.run == fold.name)].sort_values("clip_id").reset_index(drop=True)
                if part.empty:
                    raise P.ParamsError(f"{protocol_out / m}: no predictions for {fold.name} seed {seed}; rerun "
                                        f"`dvc repro protocol@{m}` under the current evaluate and train.seeds params")
                parts.append(part)
            if any(not p.clip_id.equals(parts[0].clip_id) for p in parts):
                raise P.ParamsError(f"fusion members {members} tested different clips in {fold.name} seed {seed}; "
                                    "rerun their protocol stages with the same params")
            cols = [f"p_{c}" for c in fold.labels]
            proba = fuse_probabilities([p[cols].to_numpy() for p in parts], weights)
            table = prediction_table(parts[0], proba, labels=fold.labels, columns=("clip_id", "corpus", "speaker", "label"))
            out.append(table.assign(seed=seed, run=fold.name))
            logs.append({"seed": seed, "run": fold.name, "classes": len(fold.labels), "test_clips": len(table),
                         "test_speakers": table.speaker.nunique(), "members": "+".join(members),
                         "uar": round(folds.summarise(out[-1], labels=fold.labels)["uar_pooled"], 4)})
    return out, logs


def speaker_balanced(tables: dict[str, pd.DataFrame], weights: list[float], *, fold_list: list[Fold],
                     labels: list[str], min_clips: int = balance.MIN_CLIPS) -> pd.DataFrame:
    """Protocol predictions in the speaker-balanced setting (transductive; :mod:`pipeline.balance`):
    per (seed, fold), each test speaker's probabilities divided by their mean over the
    speaker's test clips and renormalised, over the classes that the fold's labelled (train
    and val) speakers of the speaker's corpus show (:func:`pipeline.balance.labelled_classes`).
    ``tables``: one model's predictions, or a fusion's members' (balanced, fused with
    ``weights``, balanced again). A speaker with fewer than ``min_clips`` test clips keeps its
    probabilities (``balanced`` False)."""
    fold_classes = {(f.name, corpus): mask for f in fold_list
                    for corpus, mask in balance.labelled_classes(f.rows, labels=labels, fold_labels=f.labels).items()}
    return balance.rescore(tables, weights, labels=labels, fold_classes=fold_classes, min_clips=min_clips,
                           keep_small=True)


def balanced_summary(table: pd.DataFrame, *, protocol: str, seeds: list[int], labels: list[str],
                     min_clips: int) -> dict:
    """The protocol summary of :func:`speaker_balanced`'s table (balanced with ``min_clips``),
    with the setting named and the test speakers (per seed, over every fold) and clips left
    unbalanced counted."""
    first = table[table.seed == seeds[0]]
    left = first[~first.balanced]
    return {"protocol": protocol, "seeds": seeds, "setting": "speaker-balanced (transductive)",
            "min_clips": min_clips, "unbalanced_speakers": int(left.groupby(["run", "speaker"]).ngroups),
            "unbalanced_clips": len(left), **folds.summarise(table, labels=labels)}


def balanced_run(tables: dict[str, pd.DataFrame], weights: list[float], *, protocol: str, seeds: list[int],
                 fold_list: list[Fold], labels: list[str], min_clips: int = balance.MIN_CLIPS
                 ) -> tuple[pd.DataFrame, dict]:
    """:func:`speaker_balanced` predictions and their :func:`balanced_summary`, with one ``min_clips``."""
    table = speaker_balanced(tables, weights, fold_list=fold_list, labels=labels, min_clips=min_clips)
    return table, balanced_summary(table, protocol=protocol, seeds=seeds, labels=labels, min_clips=min_clips)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--metrics", type=Path, required=True,
                    help="metrics JSON to write (dvc.yaml: metrics/<model>_protocol.json)")
    ap.add_argument("--plots", type=Path, required=True, help="folder of the plots (dvc.yaml: plots/<model>)")
    ap.add_argument("--balanced", type=Path,
                    help="also write the speaker-balanced setting's metrics JSON here (dvc.yaml: "
                         "metrics/<model>_protocol_balanced.json)")
    args = ap.parse_args(argv)
    params = P.load()
    from pipeline.models import BUILDERS, FUSION, is_keras
    name = P.choice(args.model, key="--model", valid=[*BUILDERS, FUSION])
    model_params = P.section(params, "models")[name]
    base_seed = P.section(params, "base")["seed"]
    train_cfg, cfg = P.section(params, "train"), P.section(params, "evaluate")
    seeds = seeds_of(train_cfg, base_seed=base_seed)
    protocol, classes = cfg["protocol"], P.section(params, "split")["classes"]
    rows = pd.read_csv(Path(P.section(params, "data")["interim"]) / "split.csv", dtype={"source_label": str})
    fold_list = plan(rows, protocol=protocol, cfg=cfg, classes=classes, seed=base_seed)
    features_dir = Path(P.section(params, "features")["out"])
    augment_dir = Path(P.section(params, "augment")["out"])
    predictions_csv = Path(cfg["out"]) / f"{name}.csv"

    tables, logs = [], []
    jobs = [(seed, fold) for seed in seeds for fold in fold_list]
    if name == FUSION:
        tables, logs = fused_runs(model_params["members"], model_params["weights"], seeds=seeds, fold_list=fold_list,
                                  protocol_out=Path(cfg["protocol_out"]))
        jobs = []
    workers = cfg["workers"]
    bar = tqdm(jobs, desc=f"protocol {name} ({protocol})", unit="run", disable=not jobs)
    kwargs = dict(name=name, model_params=model_params, cfg=train_cfg, features_dir=features_dir,
                  augment_dir=augment_dir)
    seed_free = name != FUSION and not is_keras(name)    # an SVM: the first seed's fit stands for every seed

    def copied(seed: int) -> bool:
        return seed_free and seed != seeds[0]

    trained = [j for j in jobs if not copied(j[0]) and not (protocol == "holdout" and j[0] == base_seed)]
    results = run_jobs(trained, workers=workers, **kwargs)
    first: dict[str, tuple[pd.DataFrame, dict]] = {}   # an SVM's fit on each fold, for the other seeds
    for seed, fold in bar:
        if copied(seed):
            table, log = first[fold.name][0], {**first[fold.name][1], "seconds": 0.0, "same_as_seed": seeds[0]}
        elif protocol == "holdout" and seed == base_seed:
            table, log = reused_holdout(predictions_csv, fold)
        else:
            table, log = next(results)
        if seed_free:
            first.setdefault(fold.name, (table, log))
        table = table.assign(seed=seed, run=fold.name)
        uar = folds.summarise(table, labels=fold.labels)["uar_pooled"]
        tables.append(table)
        logs.append({"seed": seed, "run": fold.name, "classes": len(fold.labels), **log, "uar": round(uar, 4)})
        bar.write(f"protocol {name}: {fold.name} seed {seed}: UAR {uar:.3f} on {log['test_clips']} clips of "
                  f"{log['test_speakers']} unseen speakers" + (
                      f" (seed {seeds[0]}'s fit: an SVM does not depend on the seed)" if "same_as_seed" in log
                      else f" ({log['seconds']:.0f} s)" if "seconds" in log else " (the evaluate stage's model)"))
    labels = [c for c in EMOTIONS if any(c in f.labels for f in fold_list)]
    predictions = pd.concat(tables, ignore_index=True)
    summary = {"protocol": protocol, "seeds": seeds, **folds.summarise(predictions, labels=labels)}

    out = Path(cfg["protocol_out"]) / name
    out.mkdir(parents=True, exist_ok=True)
    cols = ["seed", "run", "clip_id", "corpus", "speaker", "label", "predicted", *(f"p_{c}" for c in labels)]
    predictions.reindex(columns=cols).to_csv(out / "predictions.csv", index=False)
    runs = pd.DataFrame(logs)
    runs.to_csv(out / "runs.csv", index=False)
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(summary, indent=2) + "\n")
    if args.balanced:
        if name == FUSION:   # members balanced, fused, balanced again
            member_tables = member_predictions(model_params["members"], protocol_out=Path(cfg["protocol_out"]),
                                               seeds=seeds, fold_list=fold_list)
            weights = model_params["weights"]
        else:
            member_tables, weights = {name: predictions}, [1.0]
        table, balanced = balanced_run(member_tables, weights, protocol=protocol, seeds=seeds, fold_list=fold_list,
                                       labels=labels)
        table.reindex(columns=[*cols, "balanced"]).to_csv(out / "predictions_balanced.csv", index=False)
        args.balanced.parent.mkdir(parents=True, exist_ok=True)
        args.balanced.write_text(json.dumps(balanced, indent=2) + "\n")
        print(f"protocol {name} ({protocol}), speaker-balanced: UAR {balanced['uar_mean']:.3f} ± "
              f"{balanced['uar_std']:.3f} over folds, pooled {balanced['uar_pooled']:.3f}; "
              f"{balanced['unbalanced_speakers']} test speaker(s) under {balanced['min_clips']} clips left unbalanced")
    plot_dir = args.plots
    plot_dir.mkdir(parents=True, exist_ok=True)
    runs.assign(run=runs.run + " seed " + runs.seed.astype(str))[["run", "uar"]].to_csv(
        plot_dir / "protocol_runs.csv", index=False)
    from pipeline.plots import confusion_grid
    panels = {f"{c} (UAR {summary['per_corpus'][c]['uar_pooled']:.2f})": (g.label.tolist(), g.predicted.tolist())
              for c, g in predictions.groupby("corpus", sort=True)}
    confusion_grid(panels, labels=labels, path=plot_dir / "protocol_confusion.png",
                   title=f"{name}, {protocol}: test speakers of {summary['n_folds']} fold(s) x {len(seeds)} seed(s)")
    print(f"protocol {name} ({protocol}): {summary['n_folds']} fold(s) x {len(seeds)} seed(s): UAR "
          f"{summary['uar_mean']:.3f} ± {summary['uar_std']:.3f} over folds, pooled {summary['uar_pooled']:.3f}"
          f" ± {summary['uar_pooled_seed_std']:.3f} over seeds")
    return 0


if __name__ == "__main__":
    stage.run(main, name="protocol", errors=(LeakageError, dataset.CacheError, balance.BalanceError),
              allocator="unmap")
