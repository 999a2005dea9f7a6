"""Drift check: rebuild stages with `dvc repro` and compare them with the committed dvc.lock.

Run from the project root in a clean clone (CI does, alongside the tests):

    python .ci/drift.py                       # the stages that are bit-reproducible on any CPU
    python .ci/drift.py --light               # those but the augmented eGeMAPS and the SVM after it (CI)
    python .ci/drift.py --all --tolerance 0.05  # everything; TensorFlow models' metrics within a tolerance

First, before rebuilding anything, every stage's recorded dependencies (code files, params and
command) must be those of this commit (``dvc status``; in a clean clone only the data, which is
not there yet, may differ): a commit that changed a stage's code or params without `dvc repro`
and a new dvc.lock fails, naming the stage and what changed, whichever stages are rebuilt.
Then, for every stage rebuilt, in dvc.lock order, each output's hash must equal the committed one;
the first stage that differs is named with its output and both hashes, and the check exits 1.
A stage that is in the committed dvc.lock but was not rebuilt fails too. Metrics files
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
# openSMILE + scikit-learn model, its evaluation and its protocol run. `dvc repro` of the
# last two builds all the others.
PORTABLE = ["demo", "ingest", "split", "augment@*", "features@*", "features_augmented@*", "functionals@*",
            "functionals_augmented@*", "dataviz", "train@svm", "evaluate@svm", "protocol@svm"]
PORTABLE_TARGETS = ["dataviz", "evaluate@svm", "protocol@svm"]
# --light (CI): the portable stages but eGeMAPS of every augmented copy (8 of every demo clip:
# about 10 min of CPU, half of all the drift check's work) and the SVM stages that need it. The
# same extractor is checked on the original clips, and the copies' audio (augment) bit for bit.
LIGHT_SKIPPED = ["functionals_augmented@*", "train@svm", "evaluate@svm", "protocol@svm"]
LIGHT_TARGETS = ["dataviz", "features_augmented", "functionals"]


def stale_dependencies(committed: dict) -> list[str]:
    """One line per dependency whose state differs from the committed dvc.lock, by `dvc status`
    in this clone: a code file or params key changed, added or removed, or a stage command
    changed. Data not built yet (a missing dependency that is a stage's output, lies under one or
    holds some) is not stale."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], capture_output=True, text=True)
    if proc.returncode:
        return [f"`dvc status` failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"]
    produced = {o for stage in committed.values() for o in outs(stage)}

    def built_by_a_stage(path: str) -> bool:
        def under(a: str, b: str) -> bool:
            return a == b or a.startswith(b.rstrip("/") + "/")
        return any(under(path, o) or under(o, path) for o in produced)

    lines = []
    for name, changes in json.loads(proc.stdout or "{}").items():
        for change in changes:
            if isinstance(change, str):
                if change != "always changed":
                    lines.append(f"stage {name!r}: {change} since dvc.lock")
                continue
            for path, state in change.get("changed deps", {}).items():
                if isinstance(state, dict):      # params.yaml: key -> modified | new | deleted
                    lines += [f"stage {name!r}: param {key} {what} since dvc.lock" for key, what in state.items()]
                elif state != "deleted" or not built_by_a_stage(path):
                    lines.append(f"stage {name!r}: dependency {path} {state} since dvc.lock")
    return lines


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
                    help="rebuild the portable stages but " + ", ".join(LIGHT_SKIPPED) + " (CI)")
    ap.add_argument("--tolerance", type=float, default=0.0,
                    help="with --all: largest difference allowed in a top-level metric of a non-portable stage")
    ap.add_argument("--no-repro", action="store_true", help="compare the current dvc.lock without rebuilding")
    args = ap.parse_args(argv)

    committed = yaml.safe_load(subprocess.run(["git", "show", "HEAD:dvc.lock"], check=True, capture_output=True,
                                              text=True).stdout)["stages"]
    committed_metrics = {}
    for path in sorted(Path("metrics").glob("*.json")):
        shown = subprocess.run(["git", "show", f"HEAD:{path.as_posix()}"], capture_output=True, text=True)
        if shown.returncode == 0:
            committed_metrics[path.as_posix()] = shown.stdout
    if args.all and args.light:
        ap.error("--all and --light: choose one")
    stale = stale_dependencies(committed)
    if stale:
        print(f"drift: {stale[0]}", file=sys.stderr)
        for line in stale[1:]:
            print(f"       {line}", file=sys.stderr)
        print("drift: the committed dvc.lock is not the one this code and params.yaml give: run `dvc repro` "
              "and commit dvc.lock and metrics/ with the change.", file=sys.stderr)
        return 1
    if not args.no_repro:
        targets = [] if args.all else LIGHT_TARGETS if args.light else PORTABLE_TARGETS
        print(f"drift: dvc repro {' '.join(targets) or '(every stage)'}", flush=True)
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro", *targets])
        if proc.returncode:
            print(f"drift: `dvc repro` failed (exit {proc.returncode})", file=sys.stderr)
            return 1
    produced = yaml.safe_load(Path("dvc.lock").read_text())["stages"]

    def portable(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in PORTABLE)

    def skipped(name: str) -> bool:
        return args.light and any(fnmatch.fnmatchcase(name, p) for p in LIGHT_SKIPPED)

    checked = [name for name in committed if (args.all or portable(name)) and not skipped(name)]
    problems, notes = [], []
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
    print(f"drift: the dependencies of all {len(committed)} stages are those in dvc.lock; "
          f"the outputs of {len(checked)} stages match it"
          + (f" ({len(notes)} non-portable outputs differ, metrics within {args.tolerance:g})" if notes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
