"""The drift check (.ci/drift.py) names the first stage whose outputs or metrics differ."""
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


def repo(tmp_path: Path, committed: dict, metrics: dict) -> Path:
    (tmp_path / "metrics").mkdir()
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(committed))
    (tmp_path / "metrics" / "svm.json").write_text(json.dumps(metrics))
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    return tmp_path


def drift(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / ".ci" / "drift.py"), "--no-repro", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_identical_lock_and_metrics_pass(tmp_path):
    r = repo(tmp_path, lock("a", "m", "c"), {"uar": 0.5})
    out = drift(r)
    assert out.returncode == 0, out.stderr
    assert "2 stages match" in out.stdout                    # train@cnn is not portable: not checked


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
