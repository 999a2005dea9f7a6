"""End to end, in a second copy of the tiny build (tests/test_pipeline.py's ``tiny_build``, so
that pytest-xdist runs it beside tests/test_pipeline.py): the fold protocols as experiments and
a sweep through the experiment queue. The tests share one repo and run in file order."""
import json
import sys

import pandas as pd
import pytest
import yaml

from test_pipeline import dvc, named_experiments, restore_head, sh
from test_pipeline import repo as built  # noqa: F401  (module-scoped: this file's copy of the tiny build)
from test_pipeline import tiny_build  # noqa: F401  (the session's shared build, which `built` copies)

pytestmark = pytest.mark.slow


def test_speaker_kfold_with_seeds_and_cross_corpus_run_as_experiments(built):
    from pipeline.folds import speaker_folds
    repo = built
    dst, env = repo
    restore_head(repo)
    # One Keras model and one SVM (the protocol code is the same for the others, and the fusion's
    # mean of its members' fold predictions is tests/test_protocol.py's): each protocol stage
    # trains k x seeds models, which on the two CI cores costs a minute or two per model.
    out = dvc(repo, "exp", "run", "protocol@cnn", "protocol@svm", "-S", "evaluate.protocol=speaker_kfold",
              "-S", "evaluate.speaker_kfold.k=2", "-S", "train.seeds=[1, 2]").stdout
    assert all(f"Running stage 'protocol@{model}'" in out for model in ("cnn", "svm"))
    assert "Running stage 'train@" not in out and "Running stage 'augment" not in out  # the bundles stay
    rows = pd.read_csv(dst / "data" / "interim" / "split.csv")
    expected = {f"fold{i}": set(f.speaker[f.split == "test"]) for i, f in enumerate(speaker_folds(rows, k=2, seed=42, val_share=0.15))}
    for model in ("cnn", "svm"):
        m = json.loads((dst / "metrics" / f"{model}_protocol.json").read_text())
        assert m["protocol"] == "speaker_kfold" and m["n_folds"] == 2 and m["n_seeds"] == 2 and m["seeds"] == [1, 2]
        assert {"uar_mean", "uar_std", "uar_pooled", "uar_pooled_seed_std", "per_corpus", "per_fold"} <= set(m)
        assert set(m["per_corpus"]) == set(rows.corpus)
        pred = pd.read_csv(dst / "data" / "protocol" / model / "predictions.csv")
        for seed, g in pred.groupby("seed"):  # every clip of every speaker tested exactly once per seed
            assert sorted(g.clip_id) == sorted(rows.clip_id)
            assert {run: set(s.speaker) for run, s in g.groupby("run")} == expected
        balanced = pd.read_csv(dst / "data" / "protocol" / model / "predictions_balanced.csv")
        assert sorted(zip(balanced.seed, balanced.clip_id)) == sorted(zip(pred.seed, pred.clip_id))
        b = json.loads((dst / "metrics" / f"{model}_protocol_balanced.json").read_text())
        assert b["protocol"] == "speaker_kfold" and b["seeds"] == [1, 2] and b["n_folds"] == 2
        assert b["unbalanced_clips"] == int((~balanced.balanced[balanced.seed == 1]).sum())
        runs = pd.read_csv(dst / "data" / "protocol" / model / "runs.csv")
        assert len(runs) == 4 and (runs.epochs >= 1).all()
        if model.startswith("svm"):   # fitted once per fold: seed 2's runs are seed 1's fits
            assert runs.same_as_seed.isna().tolist() == [True, True, False, False] and (runs.seconds[2:] == 0).all()
            a, b = (pred[pred.seed == s].sort_values("clip_id").drop(columns="seed").reset_index(drop=True)
                    for s in (1, 2))
            pd.testing.assert_frame_equal(a, b)
        else:
            assert "same_as_seed" not in runs
    # Two worker processes give what one process gives (the experiment ran with the default, one):
    # seed 1's two folds, one per worker, are the serial run's seed-1 rows (a run's model depends on
    # its fold and seed alone, not on the runs before it in the process).
    serial = pd.read_csv(dst / "data" / "protocol" / "cnn" / "predictions.csv")
    params = yaml.safe_load((dst / "params.yaml").read_text())
    assert params["evaluate"]["workers"] == 1
    params["evaluate"]["workers"], params["train"]["seeds"] = 2, [1]
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(sys.executable, "-m", "pipeline.protocol", "--model", "cnn", "--metrics", "metrics/cnn_protocol.json", "--plots",
       "plots/cnn", cwd=dst, env=env)
    pd.testing.assert_frame_equal(pd.read_csv(dst / "data" / "protocol" / "cnn" / "predictions.csv"),
                                  serial[serial.seed == 1].reset_index(drop=True))
    restore_head(repo)

    # cross_corpus: a Keras model (early stopping on the training corpora's speakers) and an SVM, each
    # trained on the classes the corpora share (the protocol code is the same for every model)
    out = dvc(repo, "exp", "run", "protocol@cnn", "protocol@svm", "-S", "evaluate.protocol=cross_corpus",
              "-S", "evaluate.cross_corpus.test=[emodb]", "-S", "train.seeds=null").stdout
    assert "Running stage 'protocol@cnn_lstm" not in out and "Running stage 'protocol@svm_" not in out
    shared = sorted(set(rows.label[rows.corpus == "emodb"]) & set(rows.label[rows.corpus != "emodb"]))
    for model in ("cnn", "svm"):
        m = json.loads((dst / "metrics" / f"{model}_protocol.json").read_text())
        assert m["protocol"] == "cross_corpus" and list(m["per_corpus"]) == ["emodb"]
        pred = pd.read_csv(dst / "data" / "protocol" / model / "predictions.csv")
        assert set(pred.corpus) == {"emodb"} and len(pred) == int(rows.label[rows.corpus == "emodb"].isin(shared).sum())
        assert set(pred.label) <= set(shared) and set(pred.predicted) <= set(shared)
        assert m["per_corpus"]["emodb"]["n_classes"] == len(set(pred.label))


def test_a_sweep_of_two_experiments_goes_through_the_queue_and_is_ranked(built, tmp_path):
    repo = built
    dst, env = repo
    restore_head(repo)
    space = tmp_path / "tiny.yaml"
    # the SVM: the queue, the ranking and --apply are the same for any model (sweeps/cnn.yaml is a Keras
    # model's space), and its trials run without TensorFlow's start-up in each stage process
    space.write_text(yaml.safe_dump({"name": "tiny", "method": "grid", "metric": "dvclive/svm/metrics.json:best.val_uar",
                                     "report": "metrics/svm.json:uar", "stages": ["evaluate@svm"],   # not the fusion's
                                     "params": {"models.svm.C": [0.01, 4.0]}}))
    out = sh(sys.executable, "-m", "pipeline.cli", "sweep", str(space), "--poll", "1", "--apply", cwd=dst, env=env).stdout
    assert "sweep: queued 2 experiments" in out
    ranked = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    assert [r[0] for r in ranked] == ["1", "2"] and float(ranked[0][2]) >= float(ranked[1][2]), out
    names = {r[1] for r in ranked}
    assert len(names) == 2 and all(n.startswith("tiny-") for n in names)
    shown = {name for name, _ in named_experiments(json.loads(dvc(repo, "exp", "show", "--json").stdout))}
    assert names <= shown
    best = next(json.loads(line) for line in out.splitlines() if line.startswith('{"best"'))["best"]
    assert best == ranked[0][1]
    applied = yaml.safe_load((dst / "params.yaml").read_text())["models"]["svm"]["C"]
    assert applied == {"1": 0.01, "2": 4.0}[best.rsplit("-", 1)[1]]  # grid order: trial 1 is 0.01
