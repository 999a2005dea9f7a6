"""Augmentation: every clip, provenance kept, seeded to the byte; training takes only its own clips' copies."""
import hashlib

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from pipeline import augment
from pipeline.params import ParamsError

SR = 16000
CFG = {"out": "aug", "copies": 2, "workers": 1,
       "noise": {"p": 1.0, "min_snr_db": 10.0, "max_snr_db": 20.0, "colour": "white"},
       "time_stretch": {"p": 0.5, "min_rate": 0.9, "max_rate": 1.1},
       "pitch_shift": {"p": 0.5, "min_semitones": -2.0, "max_semitones": 2.0},
       "time_shift": {"p": 0.5, "max_fraction": 0.1}}


@pytest.fixture
def project(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rows = []
    for i, part in enumerate(["train", "train", "train", "val", "test"]):
        y = 0.3 * np.sin(2 * np.pi * (150 + 20 * i) * np.arange(SR) / SR) + 0.01 * rng.standard_normal(SR)
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, y.astype(np.float32), SR)
        rows.append({"clip_id": f"emodb:clip{i}", "path": str(path), "corpus": "emodb", "speaker": f"emodb:{i % 3}",
                     "gender": "male", "emotion": "sad", "label": "sad", "split": part})
    (tmp_path / "interim" / "splits").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(tmp_path / "interim" / "splits" / "emodb.csv", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"base": {"seed": 7, "sample_rate": SR}, "data": {"dir": "data", "interim": "interim"}, "augment": CFG}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def digests(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.flac"))}


def test_every_clip_is_augmented_with_provenance(project):
    assert augment.main(["--corpus", "emodb"]) == 0
    table = pd.read_csv(project / "aug" / "emodb" / "augmented.csv")
    assert len(table) == 5 * 2
    assert set(table.source_id) == {f"emodb:clip{i}" for i in range(5)}
    assert table.groupby("source_id").split.first().to_dict() == {  # the source's holdout partition
        "emodb:clip0": "train", "emodb:clip1": "train", "emodb:clip2": "train", "emodb:clip3": "val", "emodb:clip4": "test"}
    source = pd.read_csv(project / "interim" / "splits" / "emodb.csv").set_index("clip_id")
    for row in table.itertuples():
        assert row.clip_id.startswith(row.source_id + "#aug")
        assert row.speaker == source.loc[row.source_id, "speaker"] and row.label == source.loc[row.source_id, "label"]
    assert "AddGaussianSNR" in " ".join(table.applied)  # p=1: noise is always applied
    assert len(digests(project / "aug" / "emodb")) == 10


def test_training_takes_the_copies_of_its_own_training_clips_only(project):
    from pipeline.train import training_rows
    augment.main(["--corpus", "emodb"])
    table = pd.read_csv(project / "aug" / "emodb" / "augmented.csv")
    rows = pd.read_csv(project / "interim" / "splits" / "emodb.csv")

    def used_by(partition, speakers):  # one speaker per partition, as a split or a fold would have it
        fold = rows.assign(split=partition, speaker=[speakers[p] for p in partition])
        table.assign(speaker=table.source_id.map(fold.set_index("clip_id").speaker)).to_csv(
            project / "aug" / "emodb" / "augmented.csv", index=False)
        return training_rows(fold, augment_dir=project / "aug", corpora=["emodb"])

    speakers = {"train": "emodb:a", "val": "emodb:b", "test": "emodb:c"}
    used = used_by(list(rows.split), speakers)
    copies = used[used.source == "augmented"]
    assert set(copies.source_id) == set(rows.clip_id[rows.split == "train"]) and len(copies) == 3 * 2
    assert set(used.split) == {"train"} and set(used.speaker) == {"emodb:a"}
    # A fold over the same clips: clip3 (holdout val) now trains, clip0 (holdout train) is tested.
    used = used_by(["test", "train", "train", "train", "val"], speakers)
    assert set(used.source_id.dropna()) == {"emodb:clip1", "emodb:clip2", "emodb:clip3"}


def test_a_model_takes_the_first_copies_of_a_larger_augment_run_as_a_smaller_run_made_them(project):
    """models.<name>.copies: 2 over augment.copies: 4 trains on the very rows and bytes augment.copies: 2 made."""
    from pipeline.train import training_rows
    rows = pd.read_csv(project / "interim" / "splits" / "emodb.csv")
    rows = rows.assign(speaker="emodb:" + rows.split)   # one speaker per partition, as in a fold

    def run_augment():
        augment.main(["--corpus", "emodb"])
        table = pd.read_csv(project / "aug" / "emodb" / "augmented.csv")
        table.assign(speaker=table.source_id.map(rows.set_index("clip_id").speaker)).to_csv(
            project / "aug" / "emodb" / "augmented.csv", index=False)

    run_augment()   # CFG: 2 copies
    two = digests(project / "aug" / "emodb")
    two_rows = training_rows(rows, augment_dir=project / "aug", corpora=["emodb"])
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["augment"]["copies"] = 4
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run_augment()
    four = digests(project / "aug" / "emodb")
    assert len(four) == 5 * 4 and {k: four[k] for k in two} == two   # copies 1 and 2 are byte for byte the same
    taken = training_rows(rows, augment_dir=project / "aug", corpora=["emodb"], copies=2)
    pd.testing.assert_frame_equal(taken.drop(columns="applied"), two_rows.drop(columns="applied"))
    assert list(taken.applied.fillna("")) == list(two_rows.applied.fillna(""))
    every = training_rows(rows, augment_dir=project / "aug", corpora=["emodb"])
    assert (every.source == "augmented").sum() == 3 * 4   # null: every copy of the 3 training clips
    assert list(training_rows(rows, augment_dir=project / "aug", corpora=["emodb"], copies=0).source) == ["original"] * 3
    with pytest.raises(ParamsError, match=r"models\.svm\.copies=5 asks for more augmented copies per training clip "
                                          r"than \S*aug holds \(4\): raise augment\.copies to at least 5"):
        training_rows(rows, augment_dir=project / "aug", corpora=["emodb"], copies=5, model="svm")
    params["augment"]["copies"] = 0   # the switch that turns augmentation off for every model
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run_augment()
    assert list(training_rows(rows, augment_dir=project / "aug", corpora=["emodb"], copies=2).source) == ["original"] * 3


def test_same_seed_same_bytes_other_seed_differs(project):
    augment.main(["--corpus", "emodb"])
    first = digests(project / "aug" / "emodb")
    augment.main(["--corpus", "emodb"])
    assert digests(project / "aug" / "emodb") == first
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["base"]["seed"] = 8
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    augment.main(["--corpus", "emodb"])
    assert digests(project / "aug" / "emodb") != first


def test_copies_zero_turns_augmentation_off(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["augment"]["copies"] = 0
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert augment.main(["--corpus", "emodb"]) == 0
    assert pd.read_csv(project / "aug" / "emodb" / "augmented.csv").empty


def test_augment_clip_is_a_function_of_seed_clip_and_copy():
    y = (0.3 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32)
    aug = augment.build_augmenter(CFG)
    a, _ = augment.augment_clip(y, sr=SR, augmenter=aug, seed=1, clip_id="x", copy=1)
    b, _ = augment.augment_clip(y, sr=SR, augmenter=aug, seed=1, clip_id="x", copy=1)
    c, _ = augment.augment_clip(y, sr=SR, augmenter=aug, seed=1, clip_id="x", copy=2)
    assert np.array_equal(a, b) and not (len(a) == len(c) and np.array_equal(a, c))
    assert np.abs(a).max() <= 1.0


@pytest.mark.parametrize("colour", ["pink", "brown"])
def test_coloured_noise(colour):
    cfg = {**CFG, "noise": {**CFG["noise"], "colour": colour}}
    y = np.zeros(SR, np.float32) + 0.1
    out, applied = augment.augment_clip(y, sr=SR, augmenter=augment.build_augmenter(cfg), seed=0, clip_id="x", copy=1)
    assert "AddColorNoise" in applied and np.isfinite(out).all()


@pytest.mark.parametrize("change,match", [
    ({"noise": {**CFG["noise"], "colour": "purple"}}, "augment.noise.colour='purple' is not valid"),
    ({"pitch_shift": {**CFG["pitch_shift"], "p": 2}}, r"augment\.pitch_shift\.p=2 must be <= 1"),
    ({"time_stretch": {**CFG["time_stretch"], "min_rate": 1.2}},
     r"augment\.time_stretch has min_rate=1\.2 above max_rate=1\.1; swap them"),
    ({"copies": -1}, r"augment\.copies=-1 must be >= 0"),
    ({"nosie": {}}, r"augment has unknown key\(s\) \['nosie'\]; valid keys are \['out', "),
])
def test_bad_params_are_refused(change, match):
    with pytest.raises(ParamsError, match=match):
        augment.build_augmenter({**CFG, **change})
