"""`ser sweep`: search spaces, trials, -S arguments, ranking and the queue wait loop (no DVC
here; tests/test_pipeline.py runs a real sweep through the queue)."""
import argparse
import subprocess

import pytest
import yaml

from pipeline import sweep
from pipeline.sweep import SweepError

SPACE = {"metric": "dvclive/cnn/metrics.json:best.val_uar", "trials": 5, "seed": 3,
         "params": {"models.cnn.filters": [[32, 64], [64, 128]], "models.cnn.dropout": {"uniform": [0.1, 0.5]},
                    "train.learning_rate": {"loguniform": [0.0001, 0.01]}, "train.batch_size": {"int": [8, 64]}}}


def write(tmp_path, space, name="space.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(space))
    return path


def test_random_trials_are_seeded_distinct_and_inside_their_ranges(tmp_path):
    space = sweep.load_space(write(tmp_path, SPACE))
    first, again = sweep.trials(space), sweep.trials(space)
    assert first == again and len(first) == 5
    assert len({str(t) for t in first}) == 5
    for t in first:
        assert t["models.cnn.filters"] in SPACE["params"]["models.cnn.filters"]
        assert 0.1 <= t["models.cnn.dropout"] <= 0.5 and 1e-4 <= t["train.learning_rate"] <= 1e-2
        assert isinstance(t["train.batch_size"], int) and 8 <= t["train.batch_size"] <= 64
    other = sweep.load_space(write(tmp_path, {**SPACE, "seed": 4}, "other.yaml"))
    assert sweep.trials(other) != first
    assert space["name"] == "space"  # default name: the file's stem


def test_grid_is_every_combination_and_a_small_space_gives_fewer_random_trials(tmp_path):
    grid = sweep.load_space(write(tmp_path, {"metric": "m", "method": "grid",
                                             "params": {"a.b": [1, 2, 3], "c": ["x", "y"]}}))
    combos = sweep.trials(grid)
    assert len(combos) == 6 and {(t["a.b"], t["c"]) for t in combos} == {(a, c) for a in (1, 2, 3) for c in "xy"}
    assert len(sweep.trials(grid, n=2)) == 2
    small = sweep.load_space(write(tmp_path, {"metric": "m", "params": {"a": [1, 2]}}, "small.yaml"))
    assert sorted(t["a"] for t in sweep.trials(small, n=10)) == [1, 2]


@pytest.mark.parametrize("change, match", [
    ({"params": {}}, "non-empty 'params'"),
    ({"method": "bayes"}, "method='bayes'; choose random or grid"),
    ({"metric": None}, "no 'metric' to rank by"),
    ({"params": {"x": []}}, r"params.x is an empty list"),
    ({"params": {"x": {"loguniform": [0, 1]}}}, r"must be \[low, high\] with low < high and low > 0"),
    ({"params": {"x": {"normal": [0, 1]}}}, r"give a list of values or one of"),
    ({"method": "grid", "params": {"x": {"uniform": [0, 1]}}}, "a grid needs lists of values"),
    ({"stages": "evaluate@cnn"}, r"stages='evaluate@cnn': give a list of stage names"),
])
def test_bad_spaces_are_refused_with_the_key_and_the_fix(tmp_path, change, match):
    with pytest.raises(SweepError, match=match):
        sweep.load_space(write(tmp_path, {**SPACE, **change}))
    with pytest.raises(SweepError, match="search-space file not found"):
        sweep.load_space(tmp_path / "missing.yaml")


def test_set_args_are_yaml_values_dvc_parses_and_unknown_keys_are_refused():
    args = sweep.set_args({"models.cnn.filters": [32, 64], "train.learning_rate": 0.0003, "features.sequence":
                           ["logmel", "mfcc"], "train.class_weight": "none", "train.speaker_norm": True})
    values = dict(a.split("=", 1) for a in args[1::2])
    assert args[0::2] == ["-S"] * 5
    assert {k: yaml.safe_load(v) for k, v in values.items()} == {
        "models.cnn.filters": [32, 64], "train.learning_rate": 0.0003, "features.sequence": ["logmel", "mfcc"],
        "train.class_weight": "none", "train.speaker_norm": True}
    sweep.check_keys({"models.cnn.dropout": 0.2}, {"models": {"cnn": {"dropout": 0.3}}})
    with pytest.raises(SweepError, match="'models.cnn.dropuot' is not in params.yaml"):
        sweep.check_keys({"models.cnn.dropuot": 0.2}, {"models": {"cnn": {"dropout": 0.3}}})


def test_a_validation_metric_is_refused_for_trials_that_train_on_their_validation_speakers():
    metric, params = "dvclive/svm/metrics.json:best.val_uar", {"models": {"svm": {"C": 1.0, "train_on_val": False}}}
    sweep.check_rankable([{"models.svm.C": 1.0}, {"models.svm.train_on_val": False}], params, metric)
    with pytest.raises(SweepError, match=r"trial 2 sets models.svm.train_on_val=true.*\[false\]"):
        sweep.check_rankable([{"models.svm.C": 1.0}, {"models.svm.train_on_val": True}], params, metric)
    on = {"models": {"svm": {"C": 1.0, "train_on_val": True}}}
    with pytest.raises(SweepError, match="params.yaml sets models.svm.train_on_val: true"):
        sweep.check_rankable([{"models.svm.C": 1.0}], on, metric)
    sweep.check_rankable([{"models.svm.C": 1.0}], on, "metrics/svm.json:uar")   # not a validation metric
    sweep.check_rankable([{"models.svm.train_on_val": False}], on, metric)     # the trial turns it off
    sweep.check_rankable([{"models.cnn.dropout": 0.2}], on, "dvclive/cnn/metrics.json:best.val_uar")


SHOW = """Experiment,rev,typ,Created,parent,State,Executor,best.val_uar,metrics/cnn.json:uar,metrics/cnn_lstm.json:uar,train.learning_rate
,workspace,baseline,,,,,0.5,0.6,0.61,0.001
main,abc1234,baseline,2026-11-22T03:00:00,,,,0.5,0.6,0.61,0.001
s-2,def5678,branch_commit,2026-11-22T03:10:00,,Success,,0.7,0.55,0.6,0.002
other,aaa1111,branch_commit,2026-11-22T03:05:00,,Success,,0.9,0.5,0.6,0.003
s-1,bbb2222,branch_base,2026-11-22T03:09:00,,Success,,0.6,0.65,0.6,0.0005
s-3,ccc3333,branch_base,2026-11-22T03:11:00,,Failed,,!,!,!,0.0001
"""


def test_rank_keeps_this_sweeps_trials_in_dvc_order_and_finds_clashing_columns():
    ranked = sweep.rank(SHOW, names=["s-1", "s-2", "s-3"], metric="dvclive/cnn/metrics.json:best.val_uar",
                        report="metrics/cnn.json:uar")
    assert [r["name"] for r in ranked] == ["s-2", "s-1", "s-3"]
    assert ranked[0]["score"] == 0.7 and ranked[0]["report"] == 0.55 and ranked[2]["score"] is None
    with pytest.raises(SweepError, match="no column for 'metrics/cnn.json:f1'"):
        sweep.rank(SHOW, names=["s-1"], metric="metrics/cnn.json:f1")


def test_the_wait_loop_reads_the_queue_and_restarts_a_stopped_worker():
    polls = iter([({"s-1": "Success", "s-2": "Queued"}, 0)] * 3 + [({"s-1": "Success", "s-2": "Running"}, 1),
                                                                   ({"s-1": "Success", "s-2": "Failed"}, 0)])
    calls = []

    def fake(args):
        calls.append(list(args))
        return subprocess.CompletedProcess(args, 0, "", "")

    logs = []
    assert sweep.wait(["s-1", "s-2"], jobs=1, run=fake, read=lambda: next(polls), poll_s=0,
                      log=logs.append) == {"s-1": "Success", "s-2": "Failed"}
    assert calls.count(["queue", "start", "--jobs", "1"]) == 1  # after 3 idle polls, once
    assert "sweep: s-2: failed" in logs


def test_a_sweep_with_a_failed_trial_ranks_the_others_and_exits_1(tmp_path, capsys):
    """Three trials, one failed in the queue: the two others are ranked, the failed one is
    named with the command that shows its log, and the exit status is 1."""
    space = write(tmp_path, {"name": "s", "method": "grid", "metric": "dvclive/cnn/metrics.json:best.val_uar",
                             "params": {"train.learning_rate": [0.0005, 0.002, 0.0001]}})
    calls = []

    def fake(args):
        calls.append(list(args))
        return subprocess.CompletedProcess(args, 0, SHOW if args[:2] == ["exp", "show"] else "", "")

    args = argparse.Namespace(space=space, trials=None, jobs=1, name="s", dry_run=False,
                              no_start=False, rank_only=False, apply=False, poll=0)
    done = ({"s-1": "Success", "s-2": "Success", "s-3": "Failed"}, 0)
    assert sweep.run(args, dvc=fake, read=lambda: done) == 1
    out, err = capsys.readouterr()
    assert "sweep: s-3 failed; see `dvc queue logs s-3`" in err and "1 of 3 trials failed: s-3" in err
    assert '{"best": "s-2", "score": 0.7}' in out
    assert sum(c[:3] == ["exp", "run", "--queue"] for c in calls) == 3
    args.rank_only = True
    assert sweep.run(args, dvc=fake, read=lambda: done) == 1
    assert sweep.run(args, dvc=fake, read=lambda: ({"s-1": "Success", "s-2": "Success", "s-3": "Success"}, 0)) == 0


# A pipeline of three stages as DVC's index gives it: each stage's outputs and upstream stages.
OUTS = {"train@cnn": ["models/cnn", "dvclive/cnn"], "evaluate@cnn": ["metrics/cnn.json"], "fuse": ["models/fusion"]}
UPSTREAM = {"train@cnn": {"train@cnn"}, "evaluate@cnn": {"train@cnn", "evaluate@cnn"}, "fuse": {"train@cnn", "fuse"}}


def test_stages_must_exist_and_write_the_metric_and_the_report(tmp_path):
    space = sweep.load_space(write(tmp_path, {**SPACE, "report": "metrics/cnn.json:uar", "stages": ["evaluate@cnn"]}))
    sweep.check_stages(space, outs=OUTS, upstream=UPSTREAM)          # train@cnn runs first and logs the metric
    sweep.check_stages({**space, "stages": []}, outs={}, upstream={})   # no stages: the whole pipeline
    with pytest.raises(SweepError, match=r"'evaluate@cnm' is not a stage of dvc.yaml; `dvc stage list`"):
        sweep.check_stages({**space, "stages": ["evaluate@cnm"]}, outs=OUTS, upstream=UPSTREAM)
    with pytest.raises(SweepError, match=r"\['fuse'\] do not write metrics/cnn.json \(metrics/cnn.json:uar\)"):
        sweep.check_stages({**space, "stages": ["fuse"]}, outs=OUTS, upstream=UPSTREAM)
    with pytest.raises(SweepError, match=r"do not write dvclive/cnn/metrics.json"):
        sweep.check_stages({**space, "stages": ["fuse"], "metric": "dvclive/cnn/metrics.json:best.val_uar",
                            "report": None}, outs={**OUTS, "fuse": ["models/fusion"]},
                           upstream={**UPSTREAM, "fuse": {"fuse"}})


def test_the_stages_follow_each_queued_trial(tmp_path, monkeypatch):
    space = write(tmp_path, {"name": "s", "method": "grid", "metric": "dvclive/cnn/metrics.json:best.val_uar",
                             "stages": ["evaluate@cnn"], "params": {"train.learning_rate": [0.0005, 0.002]}})
    monkeypatch.setattr(sweep, "stage_graph", lambda: (OUTS, UPSTREAM))
    calls = []

    def fake(args):
        calls.append(list(args))
        return subprocess.CompletedProcess(args, 0, "", "")

    args = argparse.Namespace(space=space, trials=None, jobs=1, name="s", dry_run=False,
                              no_start=True, rank_only=False, apply=False, poll=0)
    assert sweep.run(args, dvc=fake, read=lambda: ({}, 0)) == 0
    assert calls == [["exp", "run", "--queue", "--name", "s-1", "-S", "train.learning_rate=0.0005", "evaluate@cnn"],
                     ["exp", "run", "--queue", "--name", "s-2", "-S", "train.learning_rate=0.002", "evaluate@cnn"]]
