"""The augmented feature stages extract only the copies some model trains on: for the copies
they keep, the very rows and bytes an extraction of every copy gives; the others left out and
said so (pipeline.sources.copies_read)."""
import copy

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from fakes import PARAMS, SR, speech
from pipeline import augment, features, functionals
from pipeline.params import ParamsError
from pipeline.sources import copies_read


def with_models(**changes) -> dict:
    params = copy.deepcopy(PARAMS)
    for key, value in changes.items():
        model, field = key.split("__")
        params["models"][model][field] = value
    return params


def test_each_feature_stage_takes_the_most_copies_a_model_reading_it_trains_on():
    params = with_models(cnn__copies=2, cnn_lstm__copies=3, svm__copies=None, svm_compare__copies=4)
    assert (copies_read(params, "frames"), copies_read(params, "functionals"), copies_read(params, "compare")) == (3, None, 4)
    # an SVM over the frame features' utterance vector reads that stage, not its functionals
    params = with_models(cnn__copies=2, cnn_lstm__copies=2, svm__input="utterance", svm__copies=5)
    assert copies_read(params, "frames") == 5 and copies_read(params, "functionals") is None   # no reader: all
    assert copies_read(with_models(cnn__copies=2, cnn_lstm__copies=None), "frames") is None
    assert copies_read(with_models(cnn__copies=0, cnn_lstm__copies=0), "frames") == 0
    with pytest.raises(ParamsError, match=r"models\.cnn_lstm\.copies='two' must be an integer"):
        copies_read(with_models(cnn_lstm__copies="two"), "frames")
    with pytest.raises(ValueError, match="stage kind 'mfcc'"):
        copies_read(params, "mfcc")


@pytest.fixture
def project(tmp_path, monkeypatch):
    rows = []
    for i, (part, emotion) in enumerate([("train", "angry"), ("train", "sad"), ("val", "happy"), ("test", "sad")]):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, speech(0.8, emotion=emotion, seed=i), SR, subtype="PCM_16")
        rows.append({"clip_id": f"emodb:clip{i}", "path": str(path), "corpus": "emodb", "speaker": f"emodb:{part}",
                     "gender": "male", "emotion": emotion, "label": emotion, "split": part, "duration_s": 0.8})
    (tmp_path / "interim" / "splits").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(tmp_path / "interim" / "splits" / "emodb.csv", index=False)
    params = with_models(cnn__copies=1, cnn_lstm__copies=1, svm__copies=2)
    params["data"]["interim"] = "interim"
    params["augment"].update(out="aug", copies=3, workers=1)
    params["features"].update(out="feat", seconds=1.0, workers=1, chunk_size=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert augment.main(["--corpus", "emodb"]) == 0
    return tmp_path


def extract(project, out: str, **changes) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["features"]["out"] = out
    for key, value in changes.items():
        model, field = key.split("__")
        params["models"][model][field] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert features.main(["--corpus", "emodb", "--source", "augmented"]) == 0
    assert functionals.main(["--corpus", "emodb", "--source", "augmented", "--kind", "functionals"]) == 0


def test_the_augmented_stages_extract_the_copies_read_with_the_bytes_of_a_full_extraction(project, capsys):
    table = pd.read_csv(project / "aug" / "emodb" / "augmented.csv")
    assert sorted(set(table["copy"])) == [1, 2, 3] and len(table) == 12
    extract(project, "feat")
    said = capsys.readouterr().out
    assert "features augmented/emodb: copies 1-1 of 3, 4 of 12 clips" in said and "8 not extracted" in said
    assert "functionals augmented/emodb: copies 1-2 of 3, 8 of 12 clips" in said
    extract(project, "every", cnn__copies=None, svm__copies=None)
    assert "not extracted" not in capsys.readouterr().out
    for folder, copies, arrays in (("", 1, ("sequence", "utterance", "n_frames")), ("functionals/", 2, ("functionals",))):
        some, every = project / "feat" / f"{folder}augmented" / "emodb", project / "every" / f"{folder}augmented" / "emodb"
        ids = pd.read_csv(some / "index.csv").clip_id
        assert list(ids) == list(table.clip_id[table["copy"] <= copies])
        rows = pd.read_csv(every / "index.csv").clip_id.tolist()
        assert len(rows) == 12
        where = [rows.index(c) for c in ids]
        for name in arrays:
            kept, full = np.load(some / f"{name}.npy"), np.load(every / f"{name}.npy")
            assert kept.dtype == full.dtype and kept.tobytes() == full[where].tobytes(), name


@pytest.mark.parametrize("stage, kind", [("features_augmented", "frames"), ("functionals_augmented", "functionals"),
                                         ("compare_augmented", "compare")])
def test_an_augmented_stage_declares_the_model_params_that_choose_its_copies(stage, kind):
    """Else `dvc exp run -S models.svm.copies=8` would train on features of copies never extracted."""
    from pathlib import Path
    from pipeline.schema import MODEL_INPUTS
    from pipeline.sources import STAGE_OF_INPUT
    declared = set(yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())
                   ["stages"][stage]["do"]["params"])
    readers = [m for m, inputs in MODEL_INPUTS.items() if kind in {STAGE_OF_INPUT[i] for i in inputs}]
    assert readers and set(readers) <= set(PARAMS["models"])
    wanted = {f"models.{m}.{key}" for m in readers for key in ("input", "copies") if key in PARAMS["models"][m]}
    assert {f"models.{m}.copies" for m in readers} <= wanted <= declared
    assert not {p for p in declared if p.startswith("models.")} - wanted   # and no other model param
