"""The drift check (.ci/drift.py) names the first stage whose outputs or metrics differ, and
every stage whose code, params or command changed without a new dvc.lock."""
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def lock(features_md5: str, svm_md5: str, cnn_md5: str) -> dict:
    def stage(path, md5):
        return {"cmd": "x", "outs": [{"path": path, "hash": "md5", "md5": md5}]}
    return {"schema": "2.0", "stages": {
        "features@emodb": stage("data/features/original/emodb", features_md5),
        "evaluate@svm": {"cmd": "x", "outs": [{"path": "metrics/svm.json", "hash": "md5", "md5": svm_md5}]},
        "train@cnn": stage("models/cnn", cnn_md5)}}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True)


def repo(tmp_path: Path, committed: dict, metrics: dict) -> Path:
    """A DVC project without stages whose committed dvc.lock is ``committed`` (outputs only)."""
    (tmp_path / "metrics").mkdir()
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
    r = repo(tmp_path, lock("a", "m", "c"), {"uar": 0.5})
    out = drift(r)
    assert out.returncode == 0, out.stderr
    assert "the outputs of 2 stages match" in out.stdout     # train@cnn is not portable: not checked


def test_a_changed_feature_output_names_the_stage(tmp_path):
    r = repo(tmp_path, lock("a", "m", "c"), {"uar": 0.5})
    (r / "dvc.lock").write_text(yaml.safe_dump(lock("b", "m", "c")))
    out = drift(r)
    assert out.returncode == 1
    assert "stage 'features@emodb': output data/features/original/emodb is b, committed a" in out.stderr


def test_a_changed_portable_metric_fails_and_a_tensorflow_model_within_tolerance_passes(tmp_path):
    r = repo(tmp_path, lock("a", "m", "c"), {"uar": 0.5, "per_class": {"happy": 0.25}})
    (r / "metrics" / "svm.json").write_text(json.dumps({"uar": 0.5, "per_class": {"happy": 0.26}}))
    out = drift(r)
    assert out.returncode == 1 and "per_class.happy committed 0.25, produced 0.26" in out.stderr
    (r / "metrics" / "svm.json").write_text(json.dumps({"uar": 0.5, "per_class": {"happy": 0.25}}))
    (r / "dvc.lock").write_text(yaml.safe_dump(lock("a", "m", "d")))
    assert drift(r).returncode == 0                          # train@cnn differs but is not checked
    out = drift(r, "--all")
    assert out.returncode == 0 and "not bit-reproducible" in out.stdout


def test_code_params_or_command_changed_without_a_new_lock_fail_and_unbuilt_data_does_not(tmp_path):
    """A real two-stage project, built and committed, then checked in a clean clone (its data
    absent, as in CI): it passes; each commit that changes a stage's code, a param it reads or
    its command without `dvc repro` fails, naming the stage and the change."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "make.py").write_text("import yaml\nopen('out.txt', 'w').write(str(yaml.safe_load(open('params.yaml'))['n']))\n")
    (src / "use.py").write_text("open('used.txt', 'w').write(open('out.txt').read() * 2)\n")
    (src / "params.yaml").write_text("n: 1\n")
    (src / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "make": {"cmd": f"{sys.executable} make.py", "deps": ["make.py"], "params": ["n"], "outs": ["out.txt"]},
        "use": {"cmd": f"{sys.executable} use.py", "deps": ["use.py", "out.txt"], "outs": ["used.txt"]}}}))
    git(src, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=src, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=src, check=True, capture_output=True)
    git(src, "add", ".")
    git(src, "commit", "-qm", "built")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(src), str(clone))
    assert not (clone / "out.txt").exists()
    out = drift(clone)
    assert out.returncode == 0, out.stderr
    assert "the dependencies of all 2 stages are those in dvc.lock" in out.stdout

    def committed_change(path: str, old: str, new: str) -> subprocess.CompletedProcess:
        git(clone, "reset", "-q", "--hard", "origin/HEAD")
        (clone / path).write_text((clone / path).read_text().replace(old, new))
        git(clone, "commit", "-qam", "changed")
        return drift(clone)

    out = committed_change("use.py", "* 2", "* 3")
    assert out.returncode == 1 and "stage 'use': dependency use.py modified since dvc.lock" in out.stderr
    assert "run `dvc repro` and commit dvc.lock" in out.stderr
    out = committed_change("params.yaml", "n: 1", "n: 2")
    assert out.returncode == 1 and "stage 'make': param n modified since dvc.lock" in out.stderr
    out = committed_change("dvc.yaml", f"{sys.executable} use.py", f"{sys.executable} use.py --twice")
    assert out.returncode == 1 and "stage 'use': changed command since dvc.lock" in out.stderr
