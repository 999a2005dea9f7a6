"""Tests for pipeline.demo: layouts and names of the five stand-in corpora, audio format,
determinism (same seed, same bytes; other seed, other bytes), CREMA-D demographics and
params validation. A tiny corpus (about 100 short clips) keeps the file fast."""
from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from pipeline import demo
from pipeline.corpora import scan
from pipeline.params import ParamsError
from pipeline.vocab import EMOTIONS

TINY = {
    "out": "data/demo",
    "duration_s": [0.8, 1.0],
    "speakers": {"ravdess": 2, "tess": 2, "savee": 2, "cremad": 4, "emodb": 3},
    "clips_per_emotion": {"ravdess": 2, "tess": 2, "savee": 1, "cremad": 2, "emodb": 1},
    "sample_rates": {"ravdess": 48000, "tess": 24414, "savee": 44100, "cremad": 16000, "emodb": 16000},
}
PATTERNS = {  # corpus -> full-path regex of its real layout
    "ravdess": r"ravdess/Actor_(\d\d)/03-01-0[1-8]-0[12]-0[12]-0[12]-(\d\d)\.wav",
    "tess": r"tess/(OAF|YAF)_(angry|disgust|Fear|fear|happy|neutral|Pleasant_surprise|pleasant_surprised|Sad|sad)"
            r"/(OAF|YAF)_[a-z]+_(angry|disgust|fear|happy|neutral|ps|sad)\.wav",
    "savee": r"savee/ALL/(DC|JE|JK|KL)_(a|d|f|h|n|sa|su)\d\d\.wav",
    "cremad": r"cremad/AudioWAV/(1\d\d\d)_(IEO|TIE|IOM|IWW|TAI|MTI|IWL|ITH|DFA|ITS|TSI|WSI)"
              r"_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX)\.wav",
    "emodb": r"emodb/wav/(03|08|09|10|11|12|13|14|15|16)(a01|a02|a04|a05|a07|b01|b02|b03|b09|b10)[WLEAFTN][a-z]\.wav",
}


def wavs(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    demo.generate(out=out, demo=TINY, seed=42, progress=False)
    return out


def test_layouts_and_counts(tiny):
    names = wavs(tiny)
    assert sorted(p.name for p in tiny.iterdir()) == sorted(demo.CORPORA)
    for corpus, pattern in PATTERNS.items():
        mine = [n for n in names if n.startswith(corpus + "/")]
        assert mine and all(re.fullmatch(pattern, n) for n in mine), corpus
    assert Counter(n.split("/")[0] for n in names) == {
        "ravdess": 2 * (7 * 2 + 2),  # neutral has normal intensity only
        "tess": 2 * 7 * 2, "savee": 2 * 7 * 1, "cremad": 4 * 6 * 2, "emodb": 3 * 7 * 1}
    tess = {tuple(n.split("/")[1:]) for n in names if n.startswith("tess/")}
    assert {folder for folder, _ in tess} == {
        "OAF_angry", "OAF_disgust", "OAF_Fear", "OAF_happy", "OAF_neutral", "OAF_Pleasant_surprise", "OAF_Sad",
        "YAF_angry", "YAF_disgust", "YAF_fear", "YAF_happy", "YAF_neutral", "YAF_pleasant_surprised", "YAF_sad"}
    token = {"pleasant_surprise": "ps", "pleasant_surprised": "ps"}
    for folder, name in tess:  # the file's speaker and emotion agree with its folder
        spk, emotion = folder.split("_", 1)
        assert name.startswith(spk + "_") and name.endswith(f"_{token.get(emotion.lower(), emotion.lower())}.wav")
    assert {re.fullmatch(PATTERNS["ravdess"], n).groups() for n in names if n.startswith("ravdess/")} == {
        ("01", "01"), ("02", "02")}  # folder and file agree on the actor
    assert not any(re.search(r"-01-02-0[12]-0[12]-\d\d\.wav$", n) for n in names)  # no strong neutral


def test_audio_format_and_content(tiny):
    lo, hi = TINY["duration_s"]
    for name in wavs(tiny):
        info = sf.info(tiny / name)
        assert info.samplerate == TINY["sample_rates"][name.split("/")[0]], name
        assert (info.channels, info.subtype, info.format) == (1, "PCM_16", "WAV"), name
        assert lo - 1e-3 <= info.duration <= hi + 1e-3, name
        y, _ = sf.read(tiny / name)
        assert 0.05 < np.abs(y).max() < 1.0, name                       # audible, not clipped
        assert np.abs(y[: info.samplerate // 20]).max() < 0.01, name    # leading silence


def test_same_seed_same_bytes_other_seed_other_bytes(tiny, tmp_path):
    out, names = tmp_path / "demo", wavs(tiny)
    demo.generate(out=out, demo=TINY, seed=43, progress=False)
    assert wavs(out) == names
    assert all((tiny / n).read_bytes() != (out / n).read_bytes() for n in names)
    (out / "savee" / "ALL" / "stale.wav").write_bytes(b"old")
    demo.generate(out=out, demo=TINY, seed=42, progress=False)  # the folder is replaced
    assert wavs(out) == names
    assert all((tiny / n).read_bytes() == (out / n).read_bytes() for n in names)
    csv_path = "cremad/VideoDemographics.csv"
    assert (tiny / csv_path).read_bytes() == (out / csv_path).read_bytes()


def test_files_do_not_depend_on_what_else_is_generated(tiny, tmp_path):
    only = {k: ({"emodb": v["emodb"]} if isinstance(v, dict) else v) for k, v in TINY.items()}
    demo.generate(out=tmp_path / "emodb_only", demo=only, seed=42, progress=False)
    names = wavs(tmp_path / "emodb_only")
    assert names and all(n.startswith("emodb/") for n in names)
    assert all((tiny / n).read_bytes() == (tmp_path / "emodb_only" / n).read_bytes() for n in names)


def test_refuses_to_delete_a_folder_that_is_not_a_demo(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to delete"):
        demo.generate(out=tmp_path, demo=TINY, seed=42, progress=False)
    assert (tmp_path / "notes.txt").exists()


def test_cremad_demographics_match_the_actors(tiny):
    with (tiny / "cremad" / "VideoDemographics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["ActorID", "Age", "Sex", "Race", "Ethnicity"]
    actors = {n.split("/")[-1].split("_")[0] for n in wavs(tiny) if n.startswith("cremad/")}
    assert {r["ActorID"] for r in rows} == actors == {"1001", "1002", "1003", "1004"}
    assert sorted(r["Sex"] for r in rows) == ["Female", "Female", "Male", "Male"]
    assert all(20 <= int(r["Age"]) <= 74 for r in rows)


@pytest.mark.parametrize("corpus", demo.CORPORA)
def test_the_corpus_loaders_read_the_demo_as_planned(tiny, corpus):
    clips, rejections = scan(corpus, tiny / corpus)
    assert rejections == []
    planned = demo.plan(corpus, n_speakers=TINY["speakers"][corpus], clips=TINY["clips_per_emotion"][corpus], seed=42)
    assert sorted((c.path.relative_to(tiny).as_posix(), c.emotion, c.gender) for c in clips) == sorted(
        (it.path, it.emotion, it.sex) for it in planned)


def test_labels_map_onto_the_vocabulary():
    for corpus, table in demo.LABELS.items():
        assert set(table.values()) <= set(EMOTIONS), corpus
    assert list(demo.PROFILES) == list(EMOTIONS)


def test_plan_speakers_and_sexes():
    ravdess = demo.plan("ravdess", n_speakers=4, clips=8, seed=0)
    assert {(it.speaker, it.sex) for it in ravdess} == {("01", "male"), ("02", "female"), ("03", "male"), ("04", "female")}
    assert sum(it.emotion == "neutral" for it in ravdess) == 4 * 4 and len(ravdess) == 4 * (4 + 7 * 8)
    emodb = demo.plan("emodb", n_speakers=10, clips=1, seed=0)
    assert {it.speaker for it in emodb if it.sex == "male"} == {"03", "10", "11", "12", "15"}
    assert {it.sex for it in demo.plan("tess", n_speakers=2, clips=1, seed=0)} == {"female"}
    assert {it.sex for it in demo.plan("savee", n_speakers=4, clips=1, seed=0)} == {"male"}


def test_synthesize_is_pure_and_emotions_differ():
    voice = dict(f0_hz=120.0, formant_scale=1.0, offsets=np.zeros((len(EMOTIONS), len(demo.KEYS))))

    def clip(emotion: str, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        style = demo.clip_style(emotion=emotion, strength=1.0, rng=rng, **voice)
        return demo.synthesize(style=style, duration_s=1.5, sr=16000, rng=rng)
    y = clip("angry")
    assert y.shape == (24000,) and y.dtype == np.float64 and np.abs(y).max() <= 0.98
    np.testing.assert_array_equal(y, clip("angry"))

    def centroid(x: np.ndarray) -> float:  # power-weighted, in FFT bins
        power = np.abs(np.fft.rfft(x)) ** 2
        return float(np.sum(power * np.arange(len(power))) / np.sum(power))
    assert np.mean([centroid(clip("angry", s)) for s in range(4)]) > np.mean([centroid(clip("sad", s)) for s in range(4)])


@pytest.mark.parametrize("change, match", [
    ({"speakers": {**TINY["speakers"], "tess": 3}}, r"demo\.speakers\.tess=3 must be an integer in \[1, 2\]"),
    ({"clips_per_emotion": {**TINY["clips_per_emotion"], "cremad": 13}}, r"demo\.clips_per_emotion\.cremad=13"),
    ({"sample_rates": {**TINY["sample_rates"], "emodb": 16000.5}}, r"demo\.sample_rates\.emodb"),
    ({"speakers": {**TINY["speakers"], "iemocap": 2}}, r"unknown corpus 'iemocap'; use some of"),
    ({"sample_rates": {"ravdess": 48000}}, r"demo\.sample_rates lists \['ravdess'\]"),
    ({"duration_s": [2.0, 1.0]}, r"demo\.duration_s=\[2\.0, 1\.0\]"),
    ({"duration_s": 2.0}, r"demo\.duration_s"),
    ({"speakers": {}, "clips_per_emotion": {}, "sample_rates": {}}, r"demo\.speakers is empty"),
])
def test_bad_params_fail_before_any_work(tmp_path, change, match):
    with pytest.raises(ParamsError, match=match):
        demo.generate(out=tmp_path / "demo", demo={**TINY, **change}, seed=42, progress=False)
    assert not (tmp_path / "demo").exists()


def test_missing_key_is_named():
    with pytest.raises(ParamsError, match=r"demo is missing \['sample_rates'\]; add"):
        demo.validate({k: v for k, v in TINY.items() if k != "sample_rates"})


def test_main_reads_params_and_prints_a_summary(tmp_path, monkeypatch, capsys):
    small = {**TINY, "out": "data/demo", "speakers": {"emodb": 1}, "clips_per_emotion": {"emodb": 1},
             "sample_rates": {"emodb": 16000}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"base": {"seed": 1, "sample_rate": 16000}, "demo": small}))
    monkeypatch.chdir(tmp_path)
    demo.main()
    assert len(wavs(tmp_path / "data/demo")) == 7
    assert re.search(r"demo: 7 clips, [\d.]+ audio minutes in 1 corpora -> data/demo", capsys.readouterr().out)


def test_default_params_are_valid():
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    checked = demo.validate(params["demo"])
    assert checked["corpora"] == list(demo.CORPORA)
