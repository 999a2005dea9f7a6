"""The scoreboard stage: protocol results of several models side by side."""
from __future__ import annotations

import json

import pytest
import yaml

from fakes import PARAMS
from pipeline import folds, scoreboard
from pipeline.params import ParamsError
from test_folds import predictions_table


def summary(shift: float = 0.0, seeds=(1, 2)) -> dict:
    table, labels = predictions_table(seeds=seeds)
    table["p_happy"] += shift
    return {"protocol": "speaker_kfold", "seeds": list(seeds), **folds.summarise(table, labels=labels)}


def test_render_lists_every_model_corpus_and_class_with_mean_std_and_the_lowest_recall():
    a, b = summary(), summary(shift=5.0)          # b predicts "happy" for everything
    text = scoreboard.render({"cnn": a, "svm": b})
    assert "| model | a | b | all |" in text and "| model | neutral | happy | sad |" in text
    row = next(line for line in text.splitlines() if line.startswith("| `cnn` |") and "±" in line)
    assert f"{a['per_corpus']['a']['uar_mean']:.3f} ± {a['per_corpus']['a']['uar_std']:.3f}" in row
    assert f"{a['uar_pooled']:.3f} ± {a['uar_pooled_seed_std']:.3f}" in row
    recall_row = [line for line in text.splitlines() if line.startswith("| `svm` |")][-1]
    assert "| 0.00 (0.00) | 1.00 (1.00) | 0.00 (0.00) |" in recall_row


def test_the_stage_refuses_missing_results_and_mixed_protocols(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": PARAMS["evaluate"]}))
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "cnn_protocol.json").write_text(json.dumps(summary()))
    with pytest.raises(ParamsError, match=r"no protocol results for 'svm'"):
        scoreboard.main(["--models", "cnn", "svm", "--metrics", "metrics"])
    (tmp_path / "metrics" / "svm_protocol.json").write_text(json.dumps(summary(seeds=(1,))))
    with pytest.raises(ParamsError, match="different protocols/seeds"):
        scoreboard.main(["--models", "cnn", "svm", "--metrics", "metrics"])
    (tmp_path / "metrics" / "svm_protocol.json").write_text(json.dumps(summary(shift=1.0)))
    assert scoreboard.main(["--models", "cnn", "svm", "--metrics", "metrics"]) == 0
    assert "`svm`" in (tmp_path / "metrics" / "scoreboard.md").read_text()


def test_the_speaker_balanced_setting_is_a_section_of_its_own(tmp_path, monkeypatch):
    a, b = summary(), summary(shift=5.0)
    balanced = {"cnn": {**b, "min_clips": 14, "unbalanced_speakers": 0},
                "svm": {**a, "min_clips": 14, "unbalanced_speakers": 3}}
    text = scoreboard.render({"cnn": a, "svm": b}, balanced)
    head, tail = text.split("Speaker-balanced decoding (transductive")
    assert scoreboard.render({"cnn": a, "svm": b}) == head.rstrip("\n") + "\n"   # the inductive tables unchanged
    row = next(line for line in tail.splitlines() if line.startswith("| `cnn` |") and "±" in line)
    assert f"{b['uar_mean']:.3f} ± {b['uar_std']:.3f}" in row                    # the balanced summary's figures
    assert tail.rstrip().endswith("fewer than 14 clips, left unbalanced (per seed, over every fold): `svm` 3")

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": PARAMS["evaluate"]}))
    (tmp_path / "metrics").mkdir()
    for model, s in (("cnn", a), ("svm", b)):
        (tmp_path / "metrics" / f"{model}_protocol.json").write_text(json.dumps(s))
    (tmp_path / "metrics" / "cnn_protocol_balanced.json").write_text(json.dumps(balanced["cnn"]))
    with pytest.raises(ParamsError, match=r"no speaker-balanced results for 'svm'.*--balanced"):
        scoreboard.main(["--models", "cnn", "svm", "--metrics", "metrics", "--balanced"])
    (tmp_path / "metrics" / "svm_protocol_balanced.json").write_text(json.dumps({**balanced["svm"], "seeds": [9]}))
    with pytest.raises(ParamsError, match="different protocols/seeds"):
        scoreboard.main(["--models", "cnn", "svm", "--metrics", "metrics", "--balanced"])
    (tmp_path / "metrics" / "svm_protocol_balanced.json").write_text(json.dumps(balanced["svm"]))
    assert scoreboard.main(["--models", "cnn", "svm", "--metrics", "metrics", "--balanced"]) == 0
    assert (tmp_path / "metrics" / "scoreboard.md").read_text() == text
