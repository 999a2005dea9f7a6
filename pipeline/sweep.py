"""``ser sweep``: a random or grid hyperparameter search on DVC's experiment queue.

::

    ser sweep SPACE.yaml [--trials N] [--jobs J] [--dry-run | --no-start | --rank-only] [--apply]

1. Draws the trials from the search space (seeded, so the same file gives the same trials)
   and checks that every key exists in ``params.yaml`` and that every trial can log the
   metric (an SVM with ``train_on_val: true`` has no validation UAR).
2. Queues one experiment per trial: ``dvc exp run --queue --name <sweep>-<i> -S key=value ...``
   (followed by the ``stages:`` of the space file, if any: then each trial runs those stages and
   what they depend on, not the whole pipeline).
3. Starts ``dvc queue start --jobs J`` and waits until every trial has finished, reading the
   queue's task states and workers from DVC's Python API (the data ``dvc queue status``
   prints, which has no JSON form). ``J`` is 1 by default: parallel queue workers race on the
   Git and DVC locks and fail experiments at random (treeverse/dvc#10673). Failed trials are
   named with ``dvc queue logs <name>``; the others are still ranked, and the command exits
   1.
4. Ranks the trials with ``dvc exp show --csv --sort-by <metric> --sort-order desc`` and,
   with ``--apply``, applies the best with ``dvc exp apply`` (then ``git diff params.yaml``,
   and commit).

The default metric (``metric:`` in the space file) is the best *validation* UAR that the
train stage logs to ``dvclive/<model>/metrics.json`` (``best.val_uar``): choosing
hyperparameters by test UAR would make the test speakers part of training. The test UAR of
each trial is printed beside it for information.

Search-space file::

    name: cnn_lstm                     # experiment names: <name>-<git short sha>-<i>
    method: random                     # random | grid (grid: lists only, every combination)
    trials: 8                          # random only
    seed: 0
    metric: dvclive/cnn_lstm/metrics.json:best.val_uar
    report: metrics/cnn_lstm.json:uar  # shown, never ranked on
    stages: [evaluate@cnn_lstm]        # optional: run these (and their dependencies) only; they
                                       # must write the metric and report files
    params:                            # dotted params.yaml keys
      models.cnn_lstm.lstm_units: [32, 64, 128]          # a list: choose one
      models.cnn_lstm.dropout: {uniform: [0.1, 0.5]}     # uniform | loguniform | int: [low, high]
      train.learning_rate: {loguniform: [0.0001, 0.003]}
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from pipeline import params as P

DISTRIBUTIONS = ("uniform", "loguniform", "int")
Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


class SweepError(Exception):
    """A bad search space or a failed DVC command; the message names the cause and the fix."""


# -- pure: the search space ---------------------------------------------------------------------
def load_space(path: Path) -> dict:
    """Read and validate a search-space file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: search-space file not found; see sweeps/ for examples")
    space = yaml.safe_load(path.read_text()) or {}
    if not isinstance(space, dict) or not isinstance(space.get("params"), dict) or not space["params"]:
        raise SweepError(f"{path}: expected a mapping with a non-empty 'params' mapping of dotted keys")
    space = {"name": path.stem, "method": "random", "trials": 8, "seed": 0, "report": None, "stages": [], **space}
    if not (isinstance(space["stages"], list) and all(isinstance(x, str) and x for x in space["stages"])):
        raise SweepError(f"{path}: stages={space['stages']!r}: give a list of stage names, e.g. [evaluate@cnn]")
    if space["method"] not in ("random", "grid"):
        raise SweepError(f"{path}: method={space['method']!r}; choose random or grid")
    if not space.get("metric"):
        raise SweepError(f"{path}: no 'metric' to rank by, e.g. dvclive/cnn_lstm/metrics.json:best.val_uar")
    for key, dom in space["params"].items():
        if isinstance(dom, list):
            if not dom:
                raise SweepError(f"{path}: params.{key} is an empty list; give at least one value")
        elif isinstance(dom, dict) and len(dom) == 1 and next(iter(dom)) in DISTRIBUTIONS:
            (kind, bounds), = dom.items()
            if space["method"] == "grid":
                raise SweepError(f"{path}: params.{key} is a {kind} range; a grid needs lists of values")
            if not (isinstance(bounds, list) and len(bounds) == 2 and bounds[0] < bounds[1]
                    and (kind != "loguniform" or bounds[0] > 0)):
                raise SweepError(f"{path}: params.{key}: {kind}: {bounds!r} must be [low, high] with low < high"
                                 + (" and low > 0" if kind == "loguniform" else ""))
        else:
            raise SweepError(f"{path}: params.{key}={dom!r}: give a list of values or one of "
                             f"{{{' | '.join(DISTRIBUTIONS)}: [low, high]}}")
    return space


def check_stages(space: dict, *, outs: dict[str, list[str]], upstream: dict[str, set[str]]) -> None:
    """The space's ``stages`` exist and, with what they depend on, write the files of its metric
    and report (``outs``: each stage's output paths; ``upstream``: the stages each one runs
    after, itself included). A trial that did not rewrite them would show the parent commit's."""
    if not space["stages"]:
        return
    for name in space["stages"]:
        if name not in outs:
            raise SweepError(f"stages: {name!r} is not a stage of dvc.yaml; `dvc stage list` names them")
    runs = set().union(*(upstream[name] for name in space["stages"]))
    for spec in (space["metric"], space.get("report")):
        if not spec:
            continue
        file = spec.split(":")[0]
        if not any(file == o or file.startswith(o.rstrip("/") + "/") for name in runs for o in outs[name]):
            raise SweepError(f"stages: {space['stages']} do not write {file} ({spec}); add the stage that writes it")


def stage_graph() -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """``({stage: its output paths}, {stage: the stages it runs after, itself included})`` of the
    project's dvc.yaml, from DVC's Python API."""
    from dvc.repo import Repo

    def after(graph, stage) -> set[str]:   # the graph's edges run from a stage to those it depends on
        seen, todo = set(), [stage]
        while todo:
            node = todo.pop()
            if node.addressing not in seen:
                seen.add(node.addressing)
                todo.extend(graph.successors(node))
        return seen

    with Repo() as repo:
        graph = repo.index.graph
        outs = {st.addressing: [str(o.def_path) for o in st.outs] for st in graph}
        upstream = {st.addressing: after(graph, st) for st in graph}
    return outs, upstream


def _draw(dom: Any, rng: np.random.Generator) -> Any:
    if isinstance(dom, list):
        return dom[int(rng.integers(len(dom)))]
    (kind, (low, high)), = dom.items()
    if kind == "int":
        return int(rng.integers(int(low), int(high) + 1))
    value = rng.uniform(low, high) if kind == "uniform" else math.exp(rng.uniform(math.log(low), math.log(high)))
    return float(f"{value:.3g}")  # readable params, no false precision


def trials(space: dict, *, n: int | None = None) -> list[dict[str, Any]]:
    """The trials' ``{dotted key: value}`` dicts: every grid combination, or ``n`` (default:
    ``space['trials']``) distinct random draws from ``default_rng(space['seed'])``."""
    keys = list(space["params"])
    if space["method"] == "grid":
        combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(space["params"][k] for k in keys))]
        return combos[:n] if n else combos
    n = int(n or space["trials"])
    rng = np.random.default_rng(space["seed"])
    out: list[dict] = []
    for _ in range(50 * n):  # distinct trials; a small discrete space may hold fewer than n
        trial = {k: _draw(space["params"][k], rng) for k in keys}
        if trial not in out:
            out.append(trial)
        if len(out) == n:
            break
    return out


def set_args(trial: dict[str, Any]) -> list[str]:
    """``-S key=value`` arguments for ``dvc exp run`` (values as YAML flow, e.g. [32, 64])."""
    args = []
    for key, value in trial.items():
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
        args += ["-S", f"{key}={text}"]
    return args


def check_keys(trial: dict[str, Any], params: dict) -> None:
    for key in trial:
        try:
            P.require(params, key)
        except P.ParamsError:
            raise SweepError(f"search space key {key!r} is not in params.yaml; use a dotted key that exists, "
                             "e.g. models.cnn_lstm.lstm_units") from None


def check_rankable(trials: Sequence[dict[str, Any]], params: dict, metric: str) -> None:
    """Refuse a sweep ranked on a validation UAR that some trial cannot log: an SVM with
    ``train_on_val: true`` fits on its validation speakers and has none left to score.

    >>> check_rankable([{"models.svm.C": 1.0}], {"models": {"svm": {"train_on_val": False}}},
    ...                "dvclive/svm/metrics.json:best.val_uar")
    """
    path, _, key = metric.rpartition(":")
    parts = Path(path).parts
    if "val_uar" not in key or len(parts) < 2 or parts[0] != "dvclive":
        return
    model = parts[1]
    dotted = f"models.{model}.train_on_val"
    default = (params.get("models") or {}).get(model, {}) or {}
    for i, trial in enumerate(trials, 1):
        if trial.get(dotted, default.get("train_on_val", False)):
            where = f"trial {i} sets {dotted}=true" if dotted in trial else f"params.yaml sets {dotted}: true"
            raise SweepError(f"{where}, so {model} trains on its validation speakers and logs no {key} to rank "
                             f"on; put `{dotted}: [false]` in the space file")


def rank(show_csv: str, *, names: Sequence[str], metric: str, report: str | None = None) -> list[dict]:
    """Rows of ``dvc exp show --csv --sort-by metric --sort-order desc`` for ``names``, in
    that order: ``name``, ``score``, ``report`` (or None), ``state``."""
    rows = list(csv.DictReader(io.StringIO(show_csv)))
    header = list(rows[0]) if rows else []

    def column_of(spec: str) -> str:  # DVC names a column by its key, or file:key when keys clash
        for name in (spec, spec.split(":", 1)[-1]):
            if name in header:
                return name
        raise SweepError(f"`dvc exp show` has no column for {spec!r}; columns: {sorted(k for k in header if k)}")

    column = column_of(metric) if rows else metric
    rep_column = column_of(report) if rows and report else None
    return [{"name": row["Experiment"], "score": _number(row.get(column)),
             "report": _number(row.get(rep_column)) if rep_column else None, "state": row.get("State", "")}
            for row in rows if row.get("Experiment") in names]


def _number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


# -- I/O: DVC -----------------------------------------------------------------------------------
def run_dvc(args: Sequence[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if proc.returncode:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise SweepError(f"`dvc {' '.join(args)}` failed: {detail[0]}")
    return proc


QueueReader = Callable[[], tuple[dict[str, str], int]]


def read_queue() -> tuple[dict[str, str], int]:
    """``({name: status}, active workers)`` of the experiment queue, from DVC's Python API
    (``Queued``, ``Running``, ``Success`` or ``Failed``, as ``dvc queue status`` shows them)."""
    from dvc.repo import Repo

    with Repo() as repo:
        queue = repo.experiments.celery_queue
        states = {task["name"]: task["status"] for task in queue.status() if task.get("name")}
        active = sum(1 for task in queue.worker_status().values() if task)
    return states, active


def wait(names: Sequence[str], *, jobs: int, run: Runner = run_dvc, read: QueueReader = read_queue,
         poll_s: float = 5.0, log: Callable[[str], None] = print) -> dict[str, str]:
    """Poll the queue until every named trial succeeded or failed; restart the worker if it
    stopped with trials still queued."""
    seen: dict[str, str] = {}
    idle_polls = 0
    while True:
        states, active = read()
        mine = {n: states.get(n, "Queued") for n in names}
        for n, s in mine.items():
            if s != seen.get(n) and s in ("Running", "Success", "Failed"):
                log(f"sweep: {n}: {s.lower()}")
        seen = mine
        if all(s in ("Success", "Failed") for s in mine.values()):
            return mine
        idle_polls = idle_polls + 1 if active == 0 and "Running" not in mine.values() else 0
        if idle_polls >= 3:  # the worker can exit with work left (treeverse/dvc#10562)
            log("sweep: no queue worker is running and trials are left; starting one")
            run(["queue", "start", "--jobs", str(jobs)])
            idle_polls = 0
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ser sweep", description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("space", type=Path, metavar="SPACE.yaml", help="search-space file, e.g. sweeps/cnn_lstm.yaml")
    ap.add_argument("--trials", type=int, help="random: number of trials; grid: the first N combinations")
    ap.add_argument("--jobs", type=int, default=1, help="queue workers (default 1: parallel workers race, dvc#10673)")
    ap.add_argument("--name", help="experiment name prefix (default: <space name>-<git short sha>)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the trials' -S arguments, queue nothing")
    mode.add_argument("--no-start", action="store_true", help="queue the trials, do not start the queue")
    mode.add_argument("--rank-only", action="store_true", help="rank the trials of an earlier run of this sweep")
    ap.add_argument("--apply", action="store_true", help="`dvc exp apply` the best trial")
    ap.add_argument("--poll", type=float, default=5.0, metavar="S", help="queue status poll interval")


def run(args: argparse.Namespace, dvc: Runner = run_dvc, read: QueueReader = read_queue) -> int:
    space = load_space(args.space)
    trial_list = trials(space, n=args.trials)
    params = P.load()
    check_keys(trial_list[0], params)
    check_rankable(trial_list, params, space["metric"])
    if space["stages"]:
        outs, upstream = stage_graph()
        check_stages(space, outs=outs, upstream=upstream)
    if args.jobs < 1:
        raise SweepError(f"--jobs {args.jobs}: give at least 1 worker")
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    prefix = args.name or f"{space['name']}-{sha or 'nogit'}"
    names = [f"{prefix}-{i}" for i in range(1, len(trial_list) + 1)]
    for name, trial in zip(names, trial_list, strict=True):
        print(f"{name}: {' '.join(set_args(trial)[1::2])}")
    if args.dry_run:
        return 0
    if not args.rank_only:
        for name, trial in zip(names, trial_list, strict=True):
            dvc(["exp", "run", "--queue", "--name", name, *set_args(trial), *space["stages"]])
        print(f"sweep: queued {len(names)} experiments ({prefix}-1 .. {prefix}-{len(names)})")
        if args.no_start:
            print(f"sweep: start them with `dvc queue start --jobs {args.jobs}`; rank with "
                  f"`ser sweep {args.space} --rank-only`")
            return 0
        if args.jobs > 1:
            print("sweep: warning: parallel queue workers can race and fail trials (treeverse/dvc#10673)")
        dvc(["queue", "start", "--jobs", str(args.jobs)])
        states = wait(names, jobs=args.jobs, run=dvc, read=read, poll_s=args.poll)
        failed = [n for n, s in states.items() if s == "Failed"]
        for n in failed:
            print(f"sweep: {n} failed; see `dvc queue logs {n}`", file=sys.stderr)
    else:
        states, _ = read()
        failed = [n for n in names if states.get(n) == "Failed"]
    show = dvc(["exp", "show", "--csv", "--hide-queued", "--sort-by", space["metric"], "--sort-order", "desc"]).stdout
    ranked = rank(show, names=names, metric=space["metric"], report=space.get("report"))
    scored = [r for r in ranked if r["score"] is not None]
    if not scored:
        raise SweepError(f"no finished trial of {prefix} has {space['metric']}; see `dvc queue status`")
    print(f"\nrank  experiment  {space['metric']}" + (f"  ({space['report']}, not ranked on)" if space.get("report") else ""))
    for i, r in enumerate(scored, 1):
        extra = f"  {r['report']:.4f}" if r["report"] is not None else ""
        print(f"{i:>4}  {r['name']}  {r['score']:.4f}{extra}")
    print(json.dumps({"best": scored[0]["name"], "score": scored[0]["score"]}))
    if args.apply:
        dvc(["exp", "apply", scored[0]["name"]])
        print(f"sweep: applied {scored[0]['name']} to the workspace; review `git diff params.yaml` and commit")
    if failed:
        print(f"sweep: {len(failed)} of {len(names)} trials failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cli(argv: list[str] | None = None) -> int:
    try:
        return main(argv)
    except (SweepError, P.ParamsError) as err:
        print(f"ser sweep: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
