"""Drift check: rebuild stages with `dvc repro` and compare them with the committed dvc.lock.

Run from the project root in a clean clone (CI does, alongside the tests):

    python .ci/drift.py                       # the stages that are bit-reproducible on any CPU
    python .ci/drift.py --light               # the demo, ingestion, split and one corpus's audio and features (CI)
    python .ci/drift.py --all --tolerance 0.05  # everything; TensorFlow models' metrics within a tolerance

First, before rebuilding anything, the committed dvc.lock must be the one this commit's stages
give (:func:`stale_stages`): the same stages, each with its command, dependencies, params and
outputs, and the same content of every dependency git tracks and value of every param (`dvc
status`; only the data, not built yet in a clean clone, may differ). A commit that changed a
stage without `dvc repro` and a new dvc.lock fails, naming the stage and what changed,
whichever stages are rebuilt. Then, for every stage rebuilt, in dvc.lock order, each output's
hash must equal the committed one; the first stage that differs is named with its output and
both hashes, and the check exits 1. A checked stage that was not rebuilt fails too. Metrics files
(``metrics/*.json``) written by the rebuilt stages must equal the committed ones; with
``--all``, the top-level metrics (UAR, accuracy, macro-F1, ROC-AUC, ...) of stages that are
not bit-reproducible (TensorFlow training: see the README, "Reproducibility") may differ by
at most ``--tolerance`` each instead, and their output hashes are reported but not compared.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import math
import subprocess
import sys
from pathlib import Path

import yaml

# Bit-reproducible on any x86-64 CPU (README, "Reproducibility"): every data stage, the
# openSMILE + scikit-learn model, its evaluation and its protocol run, and the same for the GE2E
# voice encoder's features (float64 through BLAS, stored float32) and its SVM.
PORTABLE = ["demo", "ingest", "split", "augment@*", "features@*", "features_augmented@*", "functionals@*",
            "functionals_augmented@*", "dataviz", "train@svm", "evaluate@svm", "protocol@svm",
            "ge2e@*", "ge2e_augmented@*", "train@svm_ge2e", "evaluate@svm_ge2e", "protocol@svm_ge2e"]
# --light (CI) rebuilds the stages every other one starts from (the demo corpus, ingestion and the
# split: every corpus's audio, resampled from its own rate) and one corpus's augmentation, frame
# features (the log-mel family and the GE2E voice encoder's frames) and eGeMAPS functionals:
# each extractor and the copies' audio checked bit for bit on one corpus's clips, since all of
# them cost CI about 31 min beside its tests on the same 2 cores (2026-12-06). The other corpora
# run the same code on other clips; `python .ci/drift.py` rebuilds them all.
LIGHT = ["demo", "ingest", "split", "augment@savee", "features@savee", "functionals@savee"]
SHOWN = 25   # problem lines printed; the rest are counted


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def stale_stages(committed: dict) -> tuple[list[str], str | None]:
    """(one line per way the committed dvc.lock differs from this commit's stages, an error
    line if the stages could not be read).

    Structure, from dvc.yaml as DVC resolves it: stages added or removed, and per stage its
    command and the sets of dependency paths, params keys and output paths. Content, from
    `dvc status`: a dependency's hash or a param's value. A dependency that git does not track
    and that is, lies under or holds a stage's output is data, not built yet in a clean clone
    (or built by an earlier check): never stale. Everything else git does not track (a path
    outside the repo) is reported."""
    try:
        from dvc.repo import Repo
        stages = {stage.addressing: stage for stage in Repo(".").index.stages}
    except Exception as err:  # noqa: BLE001 (dvc.yaml that does not parse, or no DVC project)
        return [], f"the stages of dvc.yaml could not be read ({type(err).__name__}: {err})"
    lines = [f"stage {name!r} is in dvc.yaml but not in dvc.lock" for name in stages if name not in committed]
    lines += [f"stage {name!r} is in dvc.lock but no longer in dvc.yaml" for name in committed if name not in stages]
    for name, stage in stages.items():
        lock = committed.get(name)
        if lock is None:
            continue
        if stage.cmd != lock.get("cmd"):
            lines.append(f"stage {name!r}: command changed since dvc.lock")
        deps = {d.def_path for d in stage.deps if not hasattr(d, "params")}
        keys = {k for d in stage.deps if hasattr(d, "params") for k in d.params}
        locked_deps = {d["path"] for d in lock.get("deps", [])}
        locked_keys = {k for file_keys in (lock.get("params") or {}).values() for k in file_keys}
        for what, now, then in (("dependency", deps, locked_deps), ("param", keys, locked_keys),
                                ("output", {o.def_path for o in stage.outs}, set(outs(lock)))):
            lines += [f"stage {name!r}: {what} {x} is not in dvc.lock" for x in sorted(now - then)]
            lines += [f"stage {name!r}: {what} {x} is in dvc.lock but no longer in dvc.yaml" for x in sorted(then - now)]
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], capture_output=True, text=True)
    if proc.returncode:
        return lines, f"`dvc status` failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
    tracked = [f for f in subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout.splitlines()
               if Path(f).name != ".gitignore"]   # DVC writes one beside each output
    produced = {o for stage in committed.values() for o in outs(stage)}

    def in_git(path: str) -> bool:
        return any(under(f, path) for f in tracked)

    def data(path: str) -> bool:
        return any(under(path, o) or under(o, path) for o in produced)

    for name, changes in json.loads(proc.stdout or "{}").items():
        for change in changes:
            if not isinstance(change, dict):     # "changed command" (above), "always changed"
                continue
            for path, state in change.get("changed deps", {}).items():
                if isinstance(state, dict):      # params.yaml: key -> modified | new | deleted
                    lines += [f"stage {name!r}: param {key} {what} since dvc.lock" for key, what in state.items()]
                elif in_git(path) or not data(path):
                    lines.append(f"stage {name!r}: dependency {path} {state} since dvc.lock"
                                 + ("" if in_git(path) else " (not in git, and no stage builds it)"))
    return list(dict.fromkeys(lines)), None


def outs(stage: dict) -> dict[str, str]:
    return {o["path"]: o.get("md5") or o.get("hash") or "" for o in stage.get("outs", [])}


def flatten(node, prefix: str = "") -> dict[str, float]:
    if isinstance(node, dict):
        return {k: v for key, sub in node.items() for k, v in flatten(sub, f"{prefix}{key}.").items()}
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return {}
    return {prefix[:-1]: float(node)}


def compare_metrics(path: str, committed: str, produced: str, tolerance: float | None) -> str | None:
    """None if every number is equal; with a ``tolerance``, only the top-level numbers (UAR,
    accuracy, macro-F1, ...) are compared, each within it: per-class and per-corpus figures of
    one holdout rest on a few dozen clips and swing by far more. Else a one-line reason."""
    old, new = flatten(json.loads(committed)), flatten(json.loads(produced))
    if old.keys() != new.keys():
        return f"{path}: keys differ ({sorted(old.keys() ^ new.keys())[:5]})"
    if tolerance is not None:
        old = {k: v for k, v in old.items() if "." not in k}
    else:
        tolerance = 0.0
    for key in sorted(old):
        a, b = old[key], new[key]
        if not (math.isclose(a, b, rel_tol=0, abs_tol=tolerance) or (math.isnan(a) and math.isnan(b))):
            return f"{path}: {key} committed {a:.6g}, produced {b:.6g} (tolerance {tolerance:g})"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="rebuild every stage (slow: trains every model)")
    ap.add_argument("--light", action="store_true",
                    help="rebuild only " + ", ".join(LIGHT) + " (CI)")
    ap.add_argument("--tolerance", type=float, default=0.0,
                    help="with --all: largest difference allowed in a top-level metric of a non-portable stage")
    ap.add_argument("--no-repro", action="store_true", help="compare the current dvc.lock without rebuilding")
    args = ap.parse_args(argv)
    if args.all and args.light:
        ap.error("--all and --light: choose one")

    committed = yaml.safe_load(subprocess.run(["git", "show", "HEAD:dvc.lock"], check=True, capture_output=True,
                                              text=True).stdout)["stages"]
    committed_metrics = {}
    for path in sorted(Path("metrics").glob("*.json")):
        shown = subprocess.run(["git", "show", f"HEAD:{path.as_posix()}"], capture_output=True, text=True)
        if shown.returncode == 0:
            committed_metrics[path.as_posix()] = shown.stdout
    stale, error = stale_stages(committed)
    if error:
        print(f"drift: {error}", file=sys.stderr)
        return 1
    if stale:
        print(f"drift: {stale[0]}", file=sys.stderr)
        for line in stale[1:SHOWN]:
            print(f"       {line}", file=sys.stderr)
        if len(stale) > SHOWN:
            print(f"       ... and {len(stale) - SHOWN} more", file=sys.stderr)
        print("drift: the committed dvc.lock is not the one this code, dvc.yaml and params.yaml give: run "
              "`dvc repro` and commit dvc.lock and metrics/ with the change.", file=sys.stderr)
        return 1

    def portable(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in PORTABLE)

    def skipped(name: str) -> bool:
        return args.light and name not in LIGHT

    checked = [name for name in committed if (args.all or portable(name)) and not skipped(name)]
    if not args.no_repro:
        targets = [] if args.all else checked
        print(f"drift: dvc repro {' '.join(targets) or '(every stage)'}", flush=True)
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro", *targets])
        if proc.returncode:
            print(f"drift: `dvc repro` failed (exit {proc.returncode})", file=sys.stderr)
            return 1
    produced = yaml.safe_load(Path("dvc.lock").read_text())["stages"]

    problems, notes = [], []
    if not args.no_repro:   # `dvc repro` keeps the committed entry of a stage it did not run
        for name in checked:
            missing = [o for o in outs(committed[name]) if not Path(o).exists()]
            if missing:
                problems.append(f"stage {name!r} was not rebuilt ({missing[0]} is missing)")
    for name in checked:
        if name not in produced:
            problems.append(f"stage {name!r} is in the committed dvc.lock but was not rebuilt")
            continue
        old, new = outs(committed[name]), outs(produced[name])
        for path in sorted(old.keys() | new.keys()):
            if old.get(path) != new.get(path):
                line = f"stage {name!r}: output {path} is {new.get(path)}, committed {old.get(path)}"
                (problems if portable(name) else notes).append(line)
    for path, text in committed_metrics.items():
        owner = next((n for n in checked if any(o == path for o in outs(produced.get(n, {})))), None)
        if owner is None or not Path(path).is_file():
            continue
        reason = compare_metrics(path, text, Path(path).read_text(), None if portable(owner) else args.tolerance)
        if reason:
            problems.append(f"stage {owner!r}: {reason}")
    for line in notes:
        print(f"drift (not bit-reproducible, not compared): {line}")
    if problems:
        print(f"drift: {problems[0]}", file=sys.stderr)
        for line in problems[1:]:
            print(f"       {line}", file=sys.stderr)
        print("drift: the committed dvc.lock/metrics do not match what this code produces here. If you changed a "
              "stage, run `dvc repro` and commit dvc.lock and metrics/; otherwise the stage above is not "
              "deterministic across machines (README, \"Reproducibility\").", file=sys.stderr)
        return 1
    print(f"drift: the dependencies of all {len(committed)} stages are those in dvc.lock; the outputs of "
          f"{len(checked)} stages " + ("in it compared without a rebuild" if args.no_repro else "rebuilt match it")
          + (f" ({len(notes)} non-portable outputs differ, metrics within {args.tolerance:g})" if notes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
