"""Drift check: rebuild stages with `dvc repro` and compare them with the committed dvc.lock.

Run from the project root in a clean clone (CI does, after the tests):

    python .ci/drift.py                       # the stages that are bit-reproducible on any CPU
    python .ci/drift.py --all --tolerance 0.05  # everything; TensorFlow models' metrics within a tolerance

For every stage rebuilt, in dvc.lock order, each output's hash must equal the committed one;
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
    if not args.no_repro:
        targets = [] if args.all else PORTABLE_TARGETS
        print(f"drift: dvc repro {' '.join(targets) or '(every stage)'}", flush=True)
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro", *targets])
        if proc.returncode:
            print(f"drift: `dvc repro` failed (exit {proc.returncode})", file=sys.stderr)
            return 1
    produced = yaml.safe_load(Path("dvc.lock").read_text())["stages"]

    def portable(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in PORTABLE)

    checked = [name for name in committed if args.all or portable(name)]
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
    print(f"drift: {len(checked)} stages match the committed dvc.lock"
          + (f" ({len(notes)} non-portable outputs differ, metrics within {args.tolerance:g})" if notes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
