"""End to end, in a temporary copy of the repo: `dvc repro` on a tiny demo, caching that
follows how users work, `dvc exp run -S ...`, `dvc metrics diff`, a DVC remote round trip and
stages killed mid-work (the fold protocols and the sweep: tests/test_pipeline_experiments.py,
in a copy of its own, so the two files run side by side). The tiny demo is built (`dvc repro`)
once per test session and each file works in its own copy of it. The tests of a file share
one repo and run in file order."""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import yaml
from conftest import shared_tmp

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "demo": {"speakers": {"ravdess": 4, "emodb": 4},
             "clips_per_emotion": {"ravdess": 1, "emodb": 1},
             "duration_s": [1.0, 1.4]},
    "augment": {"copies": 1},
    "features": {"seconds": 1.0, "n_mels": 32, "n_mfcc": 13},
    "models": {"cnn": {"filters": [8], "dense": [8], "copies": 1},
               "cnn_lstm": {"filters": [8], "lstm_units": 8, "dense": [8], "copies": 1},
               "svm_compare": {"copies": 1}, "svm_ge2e": {"copies": 1}},   # every model that takes a set number of copies: 1 is made
    "train": {"epochs": 2, "batch_size": 16, "early_stopping_patience": 2},
}


def deep_update(base: dict, new: dict) -> dict:
    for k, v in new.items():
        base[k] = deep_update(dict(base.get(k) or {}), v) if isinstance(v, dict) else v
    return base


def sh(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def run_env() -> dict:
    """The environment to run git, dvc and the stages in a copy with."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
            "DVC_NO_ANALYTICS": "1"}


def copy_repo(dst: Path, *, prepare: Callable[[Path], None], message: str) -> dict:
    """Copy the project (tracked and unignored files, without metrics/, plots/, dvclive/ and
    dvc.lock) to ``dst``, let ``prepare(dst)`` change it, commit it as a fresh git repo, and
    return the environment to run git, dvc and the stages there with."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith(("metrics/", "plots/", "dvclive/")) and f != "dvc.lock":
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    prepare(dst)
    env = run_env()
    sh("git", "init", "-q", "-b", "main", cwd=dst, env=env)
    sh("git", "add", "-A", cwd=dst, env=env)
    sh("git", "commit", "-qm", message, cwd=dst, env=env)
    return env


# Two of the five corpora (two are needed: cross_corpus holds one out): each corpus adds 9 stage
# processes to the tiny `dvc repro` (its augmentation and its four feature sets of the clips and
# of their copies; with 2 corpora the build took 354 s alone on the 2 cores, 2026-12-06); the
# loaders of all five are tested on their own (tests/test_corpora.py, tests/test_ingest.py).
TINY_CORPORA = ["ravdess", "emodb"]


def tiny_params(dst: Path) -> None:
    params = deep_update(yaml.safe_load((dst / "params.yaml").read_text()), TINY)
    params["corpora"] = TINY_CORPORA
    for key in ("speakers", "clips_per_emotion", "sample_rates"):
        params["demo"][key] = {c: n for c, n in params["demo"][key].items() if c in TINY_CORPORA}
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory) -> Path:
    """A copy of the project with tiny params after one `dvc repro`, committed: built once per
    test session and shared by the end-to-end files, which copy it (:func:`repo`). Under
    pytest-xdist the first worker to ask builds it while the others wait (a file lock in the
    workers' shared temporary folder); a failed build fails every file that needs it, with
    the build's error."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = shared_tmp(tmp_path_factory)
    built, done, failed = root / "tiny-build" / "repo", root / "tiny-build.done", root / "tiny-build.failed"
    with (root / "tiny-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(f"the shared tiny `dvc repro` failed in another worker:\n{failed.read_text()}")
        if not done.exists():
            built.mkdir(parents=True, exist_ok=True)
            try:
                env = copy_repo(built, prepare=tiny_params, message="tiny")
                sh(sys.executable, "-m", "dvc", "repro", cwd=built, env=env)
                sh("git", "add", "-A", cwd=built, env=env)
                sh("git", "commit", "-qm", "repro", cwd=built, env=env)
            except BaseException as e:
                failed.write_text(str(e)[-6000:])
                raise
            done.touch()
    return built


def copy_built(src: Path, dst: Path) -> None:
    """Copy a built repo (workspace, git, DVC cache) without DVC's locks and temporary state."""
    shutil.copytree(src, dst, symlinks=True, ignore=lambda d, names: ["tmp"] if Path(d) == src / ".dvc" else [])


@pytest.fixture(scope="module")
def repo(tiny_build, tmp_path_factory):
    """This file's own copy of the tiny build: (folder, environment)."""
    dst = tmp_path_factory.mktemp("e2e") / "repo"
    copy_built(tiny_build, dst)
    return dst, run_env()


def named_experiments(node):
    """(name, params.yaml data) of every named experiment in `dvc exp show --json` output."""
    if isinstance(node, dict):
        if node.get("name") and isinstance(node.get("data"), dict):
            yield node["name"], node["data"].get("params", {}).get("params.yaml", {}).get("data", {})
        for v in node.values():
            yield from named_experiments(v)
    elif isinstance(node, list):
        for v in node:
            yield from named_experiments(v)


def dvc(repo, *args):
    dst, env = repo
    return sh(sys.executable, "-m", "dvc", *args, cwd=dst, env=env)


def test_repro_then_experiment_then_metrics_diff(repo):
    dst, env = repo   # `dvc repro` ran in the shared build (tiny_build), committed there
    for model in ("cnn", "cnn_lstm", "svm", "svm_compare", "svm_ge2e"):
        metrics = json.loads((dst / "metrics" / f"{model}.json").read_text())
        assert {"accuracy", "uar", "macro_f1", "roc_auc", "per_class", "per_corpus"} <= set(metrics)
        assert (dst / "models" / model / ("model.pkl" if model.startswith("svm") else "model.keras")).is_file()
        assert (dst / "plots" / model / "confusion.csv").is_file()
        assert (dst / "plots" / model / "protocol_confusion.png").is_file()
    board = (dst / "metrics" / "scoreboard.md").read_text()
    assert all(f"| `{model}` |" in board for model in ("cnn", "cnn_lstm", "svm", "svm_compare", "svm_ge2e", "fusion")), board
    assert "Speaker-balanced decoding (transductive" in board
    for model in ("cnn", "cnn_lstm", "svm", "svm_compare", "svm_ge2e", "fusion"):   # the same test clips, balanced per speaker
        inductive = json.loads((dst / "metrics" / f"{model}_protocol.json").read_text())
        balanced = json.loads((dst / "metrics" / f"{model}_protocol_balanced.json").read_text())
        assert balanced["setting"] == "speaker-balanced (transductive)" and balanced["n"] == inductive["n"]
    assert "up to date" in dvc(repo, "status").stdout
    assert sh("git", "status", "--porcelain", cwd=dst, env=env).stdout == ""

    # A training param invalidates training and evaluation only, never augmentation or features.
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["train"]["learning_rate"] = 0.002
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = set(json.loads(dvc(repo, "status", "--json").stdout))
    assert changed == {f"{stage}@{model}" for stage in ("train", "protocol")
                       for model in ("cnn", "cnn_lstm", "svm", "svm_compare", "svm_ge2e")}, \
        changed  # evaluate follows
    sh("git", "checkout", "params.yaml", cwd=dst, env=env)

    # A feature param re-extracts features but does not re-augment.
    params["train"]["learning_rate"] = yaml.safe_load((dst / "params.yaml").read_text())["train"]["learning_rate"]
    params["features"]["n_mfcc"] = 12
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = set(json.loads(dvc(repo, "status", "--json").stdout))
    assert not any(s.startswith(("augment", "ingest", "split", "demo", "functionals", "compare", "ge2e")) for s in changed), changed
    assert {f"features@{c}" for c in TINY_CORPORA} <= changed
    sh("git", "checkout", "params.yaml", cwd=dst, env=env)

    # Parity: the `ser` CLI, from the bundle alone, gives the evaluate stage's probabilities.
    predictions = pd.read_csv(dst / "data" / "predictions" / "cnn.csv").head(3)
    cli = sh(sys.executable, "-m", "pipeline.cli", "predict", "--json", "--model", "models/cnn",
             *predictions.path, cwd=dst, env=env).stdout
    for line, row in zip(cli.splitlines(), predictions.itertuples(), strict=True):
        got = json.loads(line)
        assert got["emotion"] == row.predicted
        for label, p in got["probabilities"].items():
            assert p == pytest.approx(getattr(row, f"p_{label}"), abs=1e-6)

    # An experiment on one model's param reruns that model's stages, the fusion and the scoreboard
    # (the SVM's: no TensorFlow start-up in its three stages).
    out = dvc(repo, "exp", "run", "-S", "models.svm.C=2.0").stdout
    assert all(f"Running stage '{s}'" in out for s in ("train@svm", "protocol@svm", "evaluate@fusion", "scoreboard")), out
    assert not any(f"Running stage '{s}" in out for s in ("features", "functionals", "augment", "train@cnn", "train@svm_")), out
    experiments = list(named_experiments(json.loads(dvc(repo, "exp", "show", "--json").stdout)))
    assert any(params["models"]["svm"]["C"] == 2.0 for _, params in experiments), experiments
    diff = json.loads(dvc(repo, "metrics", "diff", "--all", "--json").stdout)
    for model in ("cnn", "cnn_lstm", "svm", "svm_compare", "svm_ge2e"):
        assert {"uar", "accuracy", "macro_f1", "roc_auc"} <= set(diff[f"metrics/{model}.json"])
        assert all(v["old"] is not None for v in diff[f"metrics/{model}.json"].values())
    dvc(repo, "metrics", "show")


def restore_head(repo):
    """Throw away the workspace experiment of an earlier test: HEAD's params, lock and outputs."""
    dst, env = repo
    sh("git", "reset", "-q", "--hard", cwd=dst, env=env)
    dvc(repo, "checkout", "--force")


def written_since(paths, t0: float) -> bool:
    """Whether any of ``paths`` was written at or after ``t0`` (a file DVC is still deleting from
    the run before does not count)."""
    for path in paths:
        try:
            if path.stat().st_mtime >= t0:
                return True
        except FileNotFoundError:
            pass
    return False


# A stage is caught mid-work when partial outputs of this run are there and its last file is not
# yet (files of the previous run, which `dvc repro --force` deletes output by output, do not count).
KILLS = {
    "augment@ravdess": lambda d, t0: written_since((d / "data/augmented/ravdess").glob("*.flac"), t0)
    and not (d / "data/augmented/ravdess/augmented.csv").exists(),
    "features@ravdess": lambda d, t0: written_since([d / "data/features/original/ravdess/sequence.npy"], t0)
    and not (d / "data/features/original/ravdess/meta.json").exists(),
    "train@cnn": lambda d, t0: written_since([d / "dvclive/cnn/metrics.json"], t0)
    and not (d / "models/cnn/bundle.json").exists(),
}


@pytest.mark.parametrize("stage", list(KILLS))
def test_a_stage_killed_mid_work_recovers_on_the_next_repro(repo, stage):
    """SIGKILL to `dvc repro` and its stage while the stage writes; the next `dvc repro` redoes
    it and every output has the bytes of the uninterrupted run (dvc.lock unchanged)."""
    restore_head(repo)
    dst, env = repo
    lock = (dst / "dvc.lock").read_text()
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "--force", "--single-item", stage], cwd=dst, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not KILLS[stage](dst, t0) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    caught = proc.poll() is None and KILLS[stage](dst, t0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert caught, f"{stage} was not caught mid-work (exit {proc.returncode})"
    assert stage in set(json.loads(dvc(repo, "status", "--json").stdout))     # DVC sees the damage
    dvc(repo, "repro")
    # the lock the repro wrote, from the hashes of the outputs it left, is the uninterrupted run's
    # (no `dvc status` after it: a repro that succeeds leaves every stage up to date)
    assert (dst / "dvc.lock").read_text() == lock


def test_push_to_a_remote_then_a_fresh_clone_pulls_and_repro_is_a_no_op(repo, tmp_path):
    dst, env = repo
    restore_head(repo)
    dvc(repo, "remote", "add", "--default", "shared", str(tmp_path / "remote"))
    sh("git", "add", ".dvc/config", cwd=dst, env=env)
    sh("git", "commit", "-qm", "shared remote", cwd=dst, env=env)
    assert "pushed" in dvc(repo, "push").stdout
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(dst), str(clone), cwd=tmp_path, env=env)
    pull = sh(sys.executable, "-m", "dvc", "pull", cwd=clone, env=env)
    assert "added" in pull.stdout or "fetched" in pull.stdout, pull.stdout
    assert (clone / "models" / "cnn" / "model.keras").is_file()
    assert (clone / "data" / "features" / "original" / "emodb" / "sequence.npy").is_file()
    assert "Data and pipelines are up to date" in sh(sys.executable, "-m", "dvc", "repro", cwd=clone, env=env).stdout
    assert sh("git", "status", "--porcelain", cwd=clone, env=env).stdout == ""
