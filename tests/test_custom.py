"""A corpus of your own (params ``custom``), end to end in a temporary copy of the repo:
ingest (every bad row reported, nothing guessed) -> split by speaker (``split.assign``) ->
augment -> features -> train -> evaluate -> ``ser predict`` on one of its files."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
import yaml

from fakes import SR, speech
from test_pipeline import TINY, copy_repo, deep_update, sh

pytestmark = pytest.mark.slow
LABELS = {"ang": "angry", "hap": "happy", "neu": "neutral", "sad": "sad"}


def write_corpus(folder: Path) -> int:
    """6 speakers x 4 emotions x 2 clips, a label table with six bad rows, one unlisted file;
    returns the number of good rows."""
    rows = []
    for s in range(6):
        for e, code in enumerate(LABELS):
            for k in range(2):
                rel = f"spk{s}/{code}_{k}.wav"
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(folder / rel, speech(1.1, emotion=LABELS[code], seed=100 * s + 10 * e + k), SR)
                rows.append({"path": rel, "speaker": f"s{s}", "emotion": code, "sex": "" if s == 5 else "fm"[s % 2]})
    good = len(rows)
    rows += [{"path": "spk0/missing.wav", "speaker": "s0", "emotion": "ang", "sex": "f"},      # no such file
             {"path": "spk0/ang_0.wav", "speaker": "s0", "emotion": "ang", "sex": "f"},       # listed twice
             {"path": "spk1/hap_0.wav", "speaker": "s1", "emotion": "hap", "sex": "m"}]       # listed twice
    sf.write(folder / "spk0/odd.wav", speech(1.1, seed=7), SR)
    sf.write(folder / "spk0/unmapped.wav", speech(1.1, seed=8), SR)
    sf.write(folder / "spk0/nobody.wav", speech(1.1, seed=9), SR)
    sf.write(folder / "spk0/unlisted.wav", speech(1.1, seed=10), SR)
    rows += [{"path": "spk0/unmapped.wav", "speaker": "s0", "emotion": "bored", "sex": "f"},  # label not mapped
             {"path": "spk0/nobody.wav", "speaker": "", "emotion": "sad", "sex": "f"},        # no speaker
             {"path": "../outside.wav", "speaker": "s0", "emotion": "sad", "sex": "f"}]       # outside the folder
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return good


def prepare(dst: Path) -> None:
    """The corpus in ``mydata/mine`` and params that ingest only it."""
    params = deep_update(yaml.safe_load((dst / "params.yaml").read_text()), {
        k: v for k, v in TINY.items() if k != "demo"})
    params.update(corpora=["mine"], custom={"mine": {"table": "labels.csv", "labels": LABELS}})
    params["data"]["dir"] = "mydata"
    params["split"].update(classes=["neutral", "happy", "sad", "angry"],
                           assign={"mine": {"train": ["s0", "s1", "s2", "s5"], "val": ["s3"], "test": ["s4"]}})
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    dst = tmp_path_factory.mktemp("custom") / "repo"
    good = write_corpus(dst / "mydata" / "mine")
    env = copy_repo(dst, prepare=prepare, message="custom corpus")
    # the SVM: the corpus goes through ingest, split, augment, features, train and evaluate as with
    # any model, without the Keras stages' TensorFlow start-up (2 processes, about 20 s of CI)
    sh(sys.executable, "-m", "dvc", "repro", "evaluate@svm", cwd=dst, env=env)
    return dst, env, good


def test_every_bad_row_is_reported_and_nothing_is_guessed(project):
    dst, _, good = project
    manifest = pd.read_csv(dst / "data/interim/manifest.csv")
    assert len(manifest) == good and set(manifest.corpus) == {"mine"}
    assert set(manifest.speaker) == {f"mine:s{s}" for s in range(6)}
    assert manifest.groupby("speaker").gender.first().to_dict()["mine:s5"] == "unknown"
    assert set(manifest.emotion) == set(LABELS.values())
    report = (dst / "data/interim/ingest_report.md").read_text()
    for reason in ("file 'spk0/missing.wav' does not exist", "lists 'spk0/ang_0.wav' again (first on row 2)",
                   "lists 'spk1/hap_0.wav' again", "emotion 'bored' is not mapped; add it to custom.mine.labels",
                   "has no speaker", "path '../outside.wav' must be a file path relative to the corpus folder",
                   "`mine/spk0/unlisted.wav`: not listed in labels.csv", "`mine/spk0/odd.wav`: not listed",
                   "Speakers without sex (1; kept"):
        assert reason in report, reason
    assert "| mine | " in report and "| 48 | 6 |" in report


def test_it_is_split_by_speaker_trained_and_evaluated_like_any_corpus(project):
    dst, _, _ = project
    split = pd.read_csv(dst / "data/interim/split.csv")
    assert split.groupby("split").speaker.unique().map(sorted).to_dict() == {
        "train": ["mine:s0", "mine:s1", "mine:s2", "mine:s5"], "val": ["mine:s3"], "test": ["mine:s4"]}
    augmented = pd.read_csv(dst / "data/augmented/mine/augmented.csv")
    assert sorted(augmented.source_id) == sorted(split.clip_id)            # 1 copy of every clip (folds use them)
    metrics = json.loads((dst / "metrics/svm.json").read_text())
    assert metrics["n"] == 8 and metrics["n_speakers"] == 1 and "mine" in metrics["per_corpus"]


def test_ser_predict_answers_for_a_file_of_it(project):
    dst, env, _ = project
    ser = Path(sys.executable).parent / "ser"
    out = sh(str(ser), "predict", "mydata/mine/spk4/ang_0.wav", "--model", "models/svm", "--json", cwd=dst, env=env)
    row = json.loads(out.stdout.splitlines()[0])
    assert row["path"].endswith("ang_0.wav") and row["emotion"] in LABELS.values(), row
    assert sorted(row["probabilities"]) == sorted(LABELS.values())
