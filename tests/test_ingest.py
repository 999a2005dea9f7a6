"""Ingest: every valid clip catalogued, every bad file reported with its reason, nothing guessed."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from pipeline import ingest
from bad_inputs import CASES, NA

SR = 16000


def tone(seconds=1.0, sr=SR, channels=1, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    y = amp * np.sin(2 * np.pi * 220 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    return np.repeat(y[:, None], channels, axis=1) if channels > 1 else y


def write_params(root: Path, data_dir: Path) -> None:
    params = {"corpora": ["ravdess", "tess", "savee", "cremad", "emodb"], "custom": {},
              "data": {"dir": str(data_dir), "interim": str(root / "interim")},
              "ingest": {"min_duration_s": 0.25, "max_duration_s": 600.0, "silence_dbfs": -60.0, "ravdess": {"include_song": False}, "workers": 1}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture
def edge_corpus(tmp_path):
    data = tmp_path / "corpora"
    actor = data / "RAVDESS" / "Actor_01"  # folder name case is ignored
    actor.mkdir(parents=True)
    sf.write(actor / "03-01-05-01-01-01-01.wav", tone(), SR)                         # valid
    sf.write(actor / "03-01-05-01-01-02-01.wav", tone(channels=2), SR)                # stereo
    sf.write(actor / "03-01-04-01-01-01-01.wav", tone(sr=11025), 11025)               # unusual rate
    sf.write(actor / "03-01-04-01-01-02-01.wav", tone(), SR, format="FLAC")           # FLAC named .wav
    sf.write(actor / "03-01-03-01-01-01-01.wav", np.zeros(SR), SR)                    # silent
    sf.write(actor / "03-01-03-01-01-02-01.wav", tone(seconds=0.05), SR)              # 50 ms
    (actor / "03-01-06-01-01-01-01.wav").write_text("this is not audio")              # text named .wav
    (actor / "03-01-06-01-01-02-01.wav").write_bytes(b"")                             # zero-length
    good = (actor / "03-01-05-01-01-01-01.wav").read_bytes()
    (actor / "03-01-07-01-01-01-01.wav").write_bytes(good[:30])                       # truncated header
    sf.write(actor / "03-01-09-01-01-01-01.wav", tone(), SR)                          # unknown emotion code
    sf.write(actor / "hello_world.wav", tone(), SR)                                   # breaks the convention
    sf.write(actor / "03-02-05-01-01-01-01.wav", tone(), SR)                          # song: excluded
    (data / "emodb" / "wav").mkdir(parents=True)
    sf.write(data / "emodb" / "wav" / "03a01Wa.wav", tone(), SR)
    write_params(tmp_path, data)
    return tmp_path


def test_edge_cases_are_reported_and_skipped(edge_corpus, monkeypatch):
    monkeypatch.chdir(edge_corpus)
    assert ingest.main() == 0
    manifest = pd.read_csv(edge_corpus / "interim" / "manifest.csv", dtype={"source_label": str})
    names = {Path(p).name: row for p, row in zip(manifest.path, manifest.to_dict("records"), strict=True)}
    assert set(names) == {"03-01-05-01-01-01-01.wav", "03-01-05-01-01-02-01.wav", "03-01-04-01-01-01-01.wav",
                          "03-01-04-01-01-02-01.wav", "03a01Wa.wav"}
    assert names["03-01-05-01-01-02-01.wav"]["channels"] == 2
    assert names["03-01-04-01-01-01-01.wav"]["sample_rate"] == 11025
    assert names["03-01-04-01-01-02-01.wav"]["format"] == "FLAC"
    assert names["03a01Wa.wav"]["emotion"] == "angry" and names["03a01Wa.wav"]["speaker"] == "emodb:03"
    assert set(manifest.columns) >= {"path", "corpus", "speaker", "gender", "emotion", "source_label", "duration_s",
                                     "sample_rate", "channels"}
    report = (edge_corpus / "interim" / "ingest_report.md").read_text()
    for name, reason in [("03-01-03-01-01-01-01.wav", "silent"), ("03-01-03-01-01-02-01.wav", "too short"),
                         ("03-01-06-01-01-01-01.wav", ""), ("03-01-06-01-01-02-01.wav", ""),
                         ("03-01-07-01-01-01-01.wav", ""), ("03-01-09-01-01-01-01.wav", ""), ("hello_world.wav", "")]:
        line = next((ln for ln in report.splitlines() if name in ln), None)
        assert line is not None and line.startswith("- ravdess:"), f"{name} not reported"
        assert reason in line
    assert "## Rejected files (7)" in report and "## Excluded files (1)" in report
    assert "tess | not found (skipped)" in report
    per_corpus = pd.read_csv(edge_corpus / "interim" / "manifests" / "ravdess.csv")
    assert len(per_corpus) == 4


def test_sample_corpus_is_catalogued_without_rejections(sample_dir, tmp_path, monkeypatch):
    write_params(tmp_path, sample_dir)
    monkeypatch.chdir(tmp_path)
    assert ingest.main() == 0
    manifest = pd.read_csv(tmp_path / "interim" / "manifest.csv")
    assert manifest.groupby("corpus").size().to_dict() == {"emodb": 107, "ravdess": 120, "savee": 120, "tess": 140}
    assert manifest.clip_id.is_unique
    assert (manifest.duration_s > 1).all()
    assert set(manifest[manifest.corpus == "ravdess"].sample_rate) == {48000}
    report = (tmp_path / "interim" / "ingest_report.md").read_text()
    assert "## Rejected files (0)" in report and "## Excluded files (0)" in report


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    """Every row of the bad-input table as a RAVDESS clip of its own actor; ingested once."""
    root = tmp_path_factory.mktemp("bad_corpus")
    for i, case in enumerate(CASES, start=1):
        actor = root / "corpora" / "ravdess" / f"Actor_{i:02d}"
        actor.mkdir(parents=True)
        case.make(actor / f"03-01-05-01-01-01-{i:02d}.wav")
    write_params(root, root / "corpora")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert ingest.main() == 0
    manifest = pd.read_csv(root / "interim" / "manifest.csv", dtype={"source_label": str})
    return manifest, (root / "interim" / "ingest_report.md").read_text()


@pytest.mark.parametrize("case", [c for c in CASES if c.ingest != NA], ids=lambda c: c.id)
def test_every_bad_input_is_reported_with_its_reason_and_the_rest_ingested(bad_corpus, case):
    manifest, report = bad_corpus
    i = CASES.index(case) + 1
    name = f"Actor_{i:02d}/03-01-05-01-01-01-{i:02d}.wav"
    catalogued = any(p.endswith(name) for p in manifest.path)
    lines = [ln for ln in report.splitlines() if ln.startswith("- ravdess:") and name in ln]
    if case.ingest is None:
        assert catalogued and not lines
    else:
        assert not catalogued and len(lines) == 1, f"{case.id} not reported once"
        assert re.search(case.ingest, lines[0]), lines[0]


def test_the_report_tables_name_their_rows(bad_corpus):
    _, report = bad_corpus
    assert "row_0" not in report and "| speaker (sex)" in report


def test_an_unreadable_file_is_rejected_with_the_reason(tmp_path, monkeypatch):
    from pipeline.corpora import Clip

    path = tmp_path / "03-01-05-01-01-01-01.wav"
    sf.write(path, tone(), SR)

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)     # root reads any file: simulate the permission
    clip = Clip(path=path, corpus="ravdess", clip_id="ravdess:x", speaker="ravdess:01", gender="male",
                emotion="happy", source_label="03")
    got = ingest.validate(clip, min_duration_s=0.25, silence_dbfs=-60.0)
    assert got.reason == f"{path}: cannot be read (Permission denied); check its permissions and the disk"


def test_readme_lists_every_bad_input():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("## Bad input"):]
    assert all(f"| `{case.id}` |" in table for case in CASES), [c.id for c in CASES if f"| `{c.id}` |" not in table]


def test_a_corpus_folder_is_found_by_name_ignoring_case_and_separators_and_never_guessed(tmp_path):
    from pipeline.ingest import find_corpus_dir
    from pipeline.params import ParamsError

    (tmp_path / "EMO-DB").mkdir()
    assert find_corpus_dir(tmp_path, "emodb") == tmp_path / "EMO-DB"
    (tmp_path / "emo_db").mkdir()
    with pytest.raises(ParamsError, match=r"holds 2 folders for corpus 'emodb' \(EMO-DB, emo_db\); keep one"):
        find_corpus_dir(tmp_path, "emodb")
    (tmp_path / "emodb").mkdir()               # an exact name decides
    assert find_corpus_dir(tmp_path, "emodb") == tmp_path / "emodb"
    assert find_corpus_dir(tmp_path, "tess") is None
