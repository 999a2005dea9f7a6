"""The drift check (.ci/drift.py) names the first stage whose outputs or metrics differ, and
every stage whose code, params or command changed without a new dvc.lock."""
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def lock(features_md5: str, svm_md5: str, cnn_md5: str) -> dict:
    """A dvc.lock of three stages whose outputs' md5 are the given hex digits, 32 times each."""
    def stage(path, md5):
        return {"cmd": "x", "outs": [{"path": path, "hash": "md5", "md5": md5 * 32}]}
    return {"schema": "2.0", "stages": {
        "features@savee": stage("data/features/original/savee", features_md5),
        "evaluate@svm": stage("metrics/svm.json", svm_md5),
        "train@cnn": stage("models/cnn", cnn_md5)}}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True)


STAGES = {"stages": {   # the stages of lock(): features@savee, evaluate@svm, train@cnn
    "features": {"foreach": ["savee"], "do": {"cmd": "x", "outs": ["data/features/original/${item}"]}},
    "evaluate": {"foreach": ["svm"], "do": {"cmd": "x", "outs": ["metrics/${item}.json"]}},
    "train": {"foreach": ["cnn"], "do": {"cmd": "x", "outs": ["models/${item}"]}}}}


def repo(tmp_path: Path, committed: dict, metrics: dict) -> Path:
    """A DVC project with the stages of :func:`lock` and ``committed`` as its dvc.lock."""
    (tmp_path / "metrics").mkdir()
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(STAGES))
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(committed))
    (tmp_path / "metrics" / "svm.json").write_text(json.dumps(metrics))
    git(tmp_path, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "c")
    return tmp_path


def drift(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / ".ci" / "drift.py"), "--no-repro", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_identical_lock_and_metrics_pass(tmp_path):
    r = repo(tmp_path, lock("a", "e", "c"), {"uar": 0.5})
    out = drift(r)
    assert out.returncode == 0, out.stderr
    assert "the outputs of 2 stages in it compared" in out.stdout   # train@cnn is not portable: not checked


def test_a_changed_feature_output_names_the_stage(tmp_path):
    r = repo(tmp_path, lock("a", "e", "c"), {"uar": 0.5})
    (r / "dvc.lock").write_text(yaml.safe_dump(lock("b", "e", "c")))
    out = drift(r)
    assert out.returncode == 1
    assert f"stage 'features@savee': output data/features/original/savee is {'b' * 32}, committed {'a' * 32}" in out.stderr


def test_a_changed_portable_metric_fails_and_a_tensorflow_model_within_tolerance_passes(tmp_path):
    r = repo(tmp_path, lock("a", "e", "c"), {"uar": 0.5, "per_class": {"happy": 0.25}})
    (r / "metrics" / "svm.json").write_text(json.dumps({"uar": 0.5, "per_class": {"happy": 0.26}}))
    out = drift(r)
    assert out.returncode == 1 and "per_class.happy committed 0.25, produced 0.26" in out.stderr
    out = drift(r, "--light")                                # CI's: evaluate@svm is left out, features@savee kept
    assert out.returncode == 0 and "the outputs of 1 stages in it compared" in out.stdout, out.stderr
    (r / "metrics" / "svm.json").write_text(json.dumps({"uar": 0.5, "per_class": {"happy": 0.25}}))
    (r / "dvc.lock").write_text(yaml.safe_dump(lock("a", "e", "d")))
    assert drift(r).returncode == 0                          # train@cnn differs but is not checked
    out = drift(r, "--all")
    assert out.returncode == 0 and "not bit-reproducible" in out.stdout


def test_code_params_or_command_changed_without_a_new_lock_fail_and_unbuilt_data_does_not(tmp_path):
    """A real two-stage project, built and committed, then checked in a clean clone (its data
    absent, as in CI, then partly there, as after an earlier check): it passes. Each commit that
    changes a stage without `dvc repro` fails, naming the stage and the change: a code file, a
    file in a code folder, a code file deleted, a param, the command, a dependency dropped from
    dvc.yaml, a new stage."""
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "helper.py").write_text("TWICE = 2\n")
    (src / "make.py").write_text("import os, yaml\nos.makedirs('data', exist_ok=True)\n"
                                 "open('data/out.txt', 'w').write(str(yaml.safe_load(open('params.yaml'))['n']))\n")
    (src / "use.py").write_text("open('used.txt', 'w').write(open('data/out.txt').read() * 2)\n")
    (src / "params.yaml").write_text("n: 1\n")
    make = {"cmd": f"{sys.executable} make.py", "deps": ["make.py", "lib"], "params": ["n"], "outs": ["data/out.txt"]}
    use = {"cmd": f"{sys.executable} use.py", "deps": ["use.py", "data"], "outs": ["used.txt"]}   # a folder holding an output
    (src / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"make": make, "use": use}}))
    git(src, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=src, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=src, check=True, capture_output=True)
    git(src, "add", ".")
    git(src, "commit", "-qm", "built")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(src), str(clone))
    assert not (clone / "data" / "out.txt").exists()
    out = drift(clone)
    assert out.returncode == 0, out.stderr
    assert "the dependencies of all 2 stages are those in dvc.lock" in out.stdout
    (clone / "data" / "out.txt").write_text("partly built")     # data, whatever its state
    out = drift(clone)
    assert out.returncode == 0, out.stderr
    assert "--all and --light" in drift(clone, "--all", "--light").stderr

    def committed(change) -> subprocess.CompletedProcess:
        git(clone, "reset", "-q", "--hard", "origin/HEAD")
        change()
        git(clone, "add", "-A")
        git(clone, "commit", "-qm", "changed")
        return drift(clone)

    def edit(path: str, old: str, new: str):
        return lambda: (clone / path).write_text((clone / path).read_text().replace(old, new))

    def stages(**new):
        return lambda: (clone / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"make": make, "use": use, **new}}))

    for change, expected in [
            (edit("use.py", "* 2", "* 3"), "stage 'use': dependency use.py modified since dvc.lock"),
            (edit("lib/helper.py", "2", "3"), "stage 'make': dependency lib modified since dvc.lock"),
            (lambda: (clone / "lib" / "helper.py").unlink(), "stage 'make': dependency lib modified since dvc.lock (not in git"),
            (edit("params.yaml", "n: 1", "n: 2"), "stage 'make': param n modified since dvc.lock"),
            (edit("dvc.yaml", f"{sys.executable} use.py", f"{sys.executable} use.py --twice"),
             "stage 'use': command changed since dvc.lock"),
            (stages(make={**make, "deps": ["make.py"]}), "stage 'make': dependency lib is in dvc.lock but no longer in dvc.yaml"),
            (stages(extra={"cmd": "true", "deps": ["data"]}), "stage 'extra' is in dvc.yaml but not in dvc.lock")]:
        out = committed(change)
        assert out.returncode == 1 and expected in out.stderr, (expected, out.stderr)
        assert "run `dvc repro` and commit dvc.lock" in out.stderr
