"""The `ser` command line: output formats, bad inputs and exit codes, folders and lists,
the default model, the emotion timeline, and the installed console script.

CI has no trained models: the ``bundles`` fixture (``conftest.py``, ``fakes.tiny_bundles``)
holds a tiny ``cnn`` and ``cnn_lstm`` trained on synthetic clips with the real feature config.
"""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipeline.cli import NO_MODEL, best_bundle, main
from fakes import LABELS, SR, speech

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> Path:
    """good/: three demo-like clips (a 44.1 kHz stereo FLAC among them, in a sub-folder);
    bad/: a text file named .wav, an empty file, a silent clip and a 50 ms clip."""
    root = tmp_path_factory.mktemp("clips")
    (root / "good" / "sub").mkdir(parents=True)
    sf.write(root / "good" / "a_angry.wav", speech(2.0, emotion="angry", seed=1), SR, subtype="PCM_16")
    sf.write(root / "good" / "b_sad.wav", speech(3.5, emotion="sad", seed=2), SR, subtype="PCM_16")
    stereo = speech(1.5, emotion="happy", seed=3, sr=44100)
    sf.write(root / "good" / "sub" / "c_happy.flac", np.stack([stereo, 0.5 * stereo], axis=1), 44100)
    (root / "good" / "notes.txt").write_text("not audio, and not an audio suffix: never listed\n")
    bad = root / "bad"
    bad.mkdir()
    (bad / "text.wav").write_text("this is not audio\n")
    (bad / "empty.wav").write_bytes(b"")
    sf.write(bad / "silent.wav", np.zeros(SR, dtype=np.float32), SR, subtype="PCM_16")
    sf.write(bad / "short.wav", speech(1.0, seed=4)[: SR // 20], SR, subtype="PCM_16")
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def good(clips: Path) -> list[Path]:
    return sorted((clips / "good").rglob("*.wav")) + sorted((clips / "good").rglob("*.flac"))


# -- predict ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cnn", "cnn_lstm", "svm", "fusion"])
def test_json_lines_give_emotion_confidence_and_probabilities_summing_to_one(capsys, bundles, clips, name):
    code, out, err = run(capsys, "predict", "--json", "--model", bundles[name], *good(clips))
    assert code == 0 and err == ""
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in good(clips)]
    for r in rows:
        assert list(r["probabilities"]) == LABELS
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["emotion"] == max(r["probabilities"], key=r["probabilities"].get)
        assert r["confidence"] == r["probabilities"][r["emotion"]]


def test_default_output_is_an_aligned_table(capsys, bundles, clips):
    code, out, _ = run(capsys, "predict", "--model", bundles["cnn"], *good(clips))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 + len(good(clips))          # header, rule, one row per clip
    assert lines[0].split() == ["path", "emotion", "confidence", *LABELS]
    assert len({len(line.rstrip()) for line in lines[1:]}) == 1      # columns line up
    for line in lines[2:]:
        probs = [float(v) for v in line.split()[-len(LABELS):]]
        assert sum(probs) == pytest.approx(1.0, abs=0.01)


def test_csv_has_a_column_per_label_and_an_error_column(capsys, bundles, clips):
    code, out, _ = run(capsys, "predict", "--csv", "--model", bundles["cnn"], *good(clips), clips / "bad" / "text.wav")
    table = pd.read_csv(io.StringIO(out))
    assert code == 1
    assert list(table.columns) == ["path", "emotion", "confidence", *[f"p_{c}" for c in LABELS], "error"]
    ok, failed = table[table.error.isna()], table[table.error.notna()]
    assert len(ok) == len(good(clips)) and len(failed) == 1
    np.testing.assert_allclose(ok[[f"p_{c}" for c in LABELS]].sum(axis=1), 1.0, atol=1e-5)
    assert "not audio" in failed.error.iloc[0] and pd.isna(failed.emotion.iloc[0])


@pytest.mark.parametrize("name, reason", [
    ("text.wav", "not audio libsndfile can decode"),
    ("empty.wav", "zero-length file"),
    ("silent.wav", "silent"),
    ("short.wav", r"too short \(0\.050 s\); at least 0\.25 s"),
    ("missing.wav", "file not found"),
])
def test_a_bad_input_gets_one_line_on_stderr_and_the_others_are_still_predicted(capsys, bundles, clips, name, reason):
    bad = clips / "bad" / name
    code, out, err = run(capsys, "predict", "--json", "--model", bundles["cnn"], bad, *good(clips))
    assert code == 1
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert re.search(reason, err) and "Traceback" not in err
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0]["path"] == str(bad) and set(rows[0]) == {"path", "error"}
    assert all("emotion" in r for r in rows[1:]) and len(rows) == 1 + len(good(clips))


def test_folders_are_searched_recursively_in_sorted_order_and_a_list_file_adds_paths(capsys, bundles, clips, tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text(f"# clips to check\n\n{clips / 'good' / 'b_sad.wav'}\n")
    code, out, _ = run(capsys, "predict", "--json", "--model", bundles["cnn"], clips / "good", "--list", listed)
    paths = [json.loads(line)["path"] for line in out.splitlines()]
    assert code == 0
    assert paths == [str(clips / "good" / p) for p in ("a_angry.wav", "b_sad.wav", "sub/c_happy.flac", "b_sad.wav")]


def test_a_folder_without_audio_fails_with_the_reason(capsys, bundles, tmp_path):
    code, _, err = run(capsys, "predict", "--model", bundles["cnn"], tmp_path)
    assert code == 1 and f"{tmp_path}: no audio files" in err


def test_usage_errors_exit_2(capsys, bundles, clips, tmp_path, monkeypatch):
    assert run(capsys, "predict", "--model", bundles["cnn"])[0] == 2                     # no input
    code, _, err = run(capsys, "predict", "--model", tmp_path / "nothing", *good(clips))
    assert code == 2 and "not a model bundle" in err
    code, _, err = run(capsys, "predict", "--model", bundles["cnn"], "--list", tmp_path / "none.txt")
    assert code == 2 and "cannot read the list file" in err
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--json", "--csv", str(good(clips)[0])])
    assert exit_.value.code == 2 and "not allowed with argument --json" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)                                                          # outside any project
    code, _, err = run(capsys, "predict", *good(clips))
    assert code == 2 and NO_MODEL in err and len(err.splitlines()) == 1


def test_the_default_model_is_the_best_bundle_by_test_uar(bundles, tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  out: trained\n")
    (tmp_path / "metrics").mkdir()
    for name, uar in (("cnn", 0.41), ("cnn_lstm", 0.52), ("gone", 0.9)):            # "gone" has no bundle
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps({"uar": uar}))
    for name in bundles:
        shutil.copytree(bundles[name], tmp_path / "trained" / name)
    assert best_bundle(tmp_path) == tmp_path / "trained" / "cnn_lstm"


def test_real_sample_clips_are_predicted(capsys, bundles, sample_dir):
    paths = [p for corpus in sorted(sample_dir.iterdir()) if corpus.is_dir() for p in sorted(corpus.rglob("*.wav"))[:2]]
    code, out, err = run(capsys, "predict", "--csv", "--model", bundles["cnn_lstm"], *paths)
    table = pd.read_csv(io.StringIO(out))
    assert code == 0 and err == "" and len(table) == len(paths) >= 2
    np.testing.assert_allclose(table[[f"p_{c}" for c in LABELS]].sum(axis=1), 1.0, atol=1e-5)


def test_the_installed_console_script_reports_errors_on_one_line_with_exit_status_1(bundles, clips):
    script = Path(sys.executable).with_name("ser")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline.cli"]
    missing = clips / "bad" / "missing.wav"   # the SVM's bundle: the script's errors are the same, without TensorFlow's start-up
    done = subprocess.run([*command, "predict", "--json", "--model", str(bundles["svm"]), str(good(clips)[0]),
                           str(missing)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert [json.loads(line)["path"] for line in done.stdout.splitlines()] == [str(good(clips)[0]), str(missing)]
    assert done.stderr.splitlines() == [f"ser: {missing}: file not found; check the path"]


# -- timeline ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """20 s: speech 0-6 s, digital silence 6-13 s, speech 13-20 s."""
    speech_a = np.concatenate([speech(2.0, emotion=e, seed=i) for i, e in enumerate(("angry", "sad", "happy"))])
    speech_b = np.concatenate([speech(3.5, emotion=e, seed=5 + i) for i, e in enumerate(("fearful", "neutral"))])
    y = np.concatenate([speech_a, np.zeros(7 * SR, dtype=np.float32), speech_b])
    assert len(y) == 20 * SR
    path = tmp_path_factory.mktemp("timeline") / "talk.wav"
    sf.write(path, y, SR, subtype="PCM_16")
    return path


@pytest.mark.parametrize("name", ["cnn_lstm", "svm", "fusion"])
def test_timeline_marks_windows_without_speech_and_writes_a_png(capsys, bundles, recording, tmp_path, name):
    prefix = tmp_path / "out" / "talk"
    code, out, _ = run(capsys, "timeline", recording, "--model", bundles[name], "--out", prefix,
                       "--window", "3", "--hop", "1")
    table = pd.read_csv(prefix.with_suffix(".csv"))
    assert code == 0 and str(prefix.with_suffix(".png")) in out
    assert prefix.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(table.columns) == ["start_s", "end_s", "speech_s", "speech", "emotion", "confidence",
                                   *[f"p_{c}" for c in LABELS]]
    assert table.start_s.tolist() == [float(s) for s in range(18)]          # every window, in order
    speech_starts = set(table.start_s[table.speech])
    assert {0.0, 1.0, 2.0, 3.0, 13.0, 14.0, 15.0, 16.0, 17.0} <= speech_starts
    assert not {6.0, 7.0, 8.0, 9.0, 10.0} & speech_starts                 # windows inside the silence
    assert (table.speech_s[~table.speech] < 0.3).all() and table.emotion[~table.speech].isna().all()
    np.testing.assert_allclose(table.end_s - table.start_s, 3.0)
    voiced = table[table.speech]
    np.testing.assert_allclose(voiced[[f"p_{c}" for c in LABELS]].sum(axis=1), 1.0, atol=1e-5)


def test_timeline_json_and_the_default_prefix_in_the_current_folder(capsys, bundles, recording, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, _ = run(capsys, "timeline", recording, "--json", "--model", bundles["cnn"], "--hop", "2")
    doc = json.loads((tmp_path / "talk_timeline.json").read_text())
    assert code == 0 and (tmp_path / "talk_timeline.png").is_file()
    assert doc["labels"] == LABELS and doc["hop_s"] == 2.0 and doc["window_s"] == 3.0   # built-in default
    assert [w["start_s"] for w in doc["windows"]][:2] == [0.0, 2.0]


def test_timeline_of_a_bad_file_is_one_line_and_exit_1(capsys, bundles, clips):
    code, _, err = run(capsys, "timeline", clips / "bad" / "text.wav", "--model", bundles["cnn"])
    assert code == 1 and len(err.splitlines()) == 1 and "text.wav: not audio" in err
    assert run(capsys, "timeline", clips / "good" / "a_angry.wav", "--model", bundles["cnn"], "--hop", "0")[0] == 2


def test_csv_rows_parse_with_the_csv_module(capsys, bundles, clips):
    _, out, _ = run(capsys, "predict", "--csv", "--model", bundles["cnn"], good(clips)[0])
    header, row = list(csv.reader(io.StringIO(out)))
    assert header[-1] == "error" and row[-1] == "" and float(row[2]) > 0


@pytest.fixture
def speaker_norm_bundle(bundles, tmp_path) -> Path:
    """The tiny cnn bundle marked as trained with train.speaker_norm: true."""
    folder = tmp_path / "spk"
    shutil.copytree(bundles["cnn"], folder)
    meta = json.loads((folder / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps({**meta, "speaker_norm": True}))
    return folder


def test_a_speaker_normalised_model_predicts_one_speakers_clips_together(capsys, speaker_norm_bundle, clips):
    from pipeline import bundle as B
    from pipeline.infer import Predictor

    code, _, err = run(capsys, "predict", "--model", speaker_norm_bundle, *good(clips))
    assert code == 2 and "normalises features per speaker" in err and "--one-speaker" in err
    bad = clips / "bad" / "missing.wav"
    code, out, err = run(capsys, "predict", "--json", "--one-speaker", "--model", speaker_norm_bundle, *good(clips), bad)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and [r["path"] for r in rows] == [*map(str, good(clips)), str(bad)] and "error" in rows[-1]
    # the clips' own statistics stand in for the speaker's: the same as the evaluate path with one speaker id
    predictor = Predictor(speaker_norm_bundle)
    ys = [predictor.load(p) for p in good(clips)]
    got = np.array([[r["probabilities"][c] for c in LABELS] for r in rows[:-1]])
    np.testing.assert_allclose(got, predictor.probabilities(ys, one_speaker=True), atol=1e-12)
    b = B.load(speaker_norm_bundle)
    assert b.speaker_norm
    # and it is speaker normalisation: a clip's answer depends on the speaker's other clips
    assert not np.allclose(predictor.probabilities(ys, one_speaker=True)[0],
                           predictor.probabilities(ys[:2], one_speaker=True)[0])


# -- the bad-input table (tests/bad_inputs.py) -------------------------------------------------
@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> Path:
    from bad_inputs import CASES

    root = tmp_path_factory.mktemp("bad_inputs")
    for case in CASES:
        case.make(root / f"{case.id}.wav")
    return root


@pytest.mark.parametrize("case", __import__("bad_inputs").CASES, ids=lambda c: c.id)
def test_every_bad_input_gets_its_one_line_reason_and_good_ones_a_prediction(capsys, bundles, clips, bad_inputs, case):
    path = bad_inputs / f"{case.id}.wav"
    code, out, err = run(capsys, "predict", "--json", "--model", bundles["cnn"], path, good(clips)[0])
    rows = [json.loads(line) for line in out.splitlines()]
    assert "Traceback" not in err and len(rows) == 2 and "emotion" in rows[1]
    if case.cli is None:
        assert code == 0 and err == "" and "emotion" in rows[0]
    else:
        assert code == 1 and len(err.splitlines()) == 1 and str(path) in err
        assert re.search(case.cli, err), err
        assert set(rows[0]) == {"path", "error"}


def test_a_quiet_real_recording_gets_a_timeline(capsys, bundles, sample_dir, tmp_path):
    """Six real RAVDESS clips joined at their own (quiet) level: windows of -48 to -59 dBFS RMS
    that an absolute level gate skipped; the detector judges them after loudness normalisation."""
    from pipeline import audio

    files = sorted((sample_dir / "ravdess").rglob("*.wav"))[:6]
    y = np.concatenate([audio.load(f, sr=SR) for f in files])
    assert audio.rms_dbfs(y) < -40
    path = tmp_path / "quiet.wav"
    sf.write(path, y, SR, subtype="PCM_16")
    code, out, err = run(capsys, "timeline", path, "--model", bundles["cnn"], "--out", tmp_path / "t")
    table = pd.read_csv(tmp_path / "t.csv")
    assert code == 0 and err == "" and table.speech.mean() > 0.8, table[["start_s", "speech_s"]]


def test_max_duration_flag_and_a_detector_that_cannot_run(capsys, bundles, bad_inputs, monkeypatch):
    long = bad_inputs / "long.wav"                                         # 700 s of a quiet square wave
    code, _, err = run(capsys, "predict", "--model", bundles["cnn"], "--max-duration", "800", long)
    assert code == 1 and "no speech detected" in err                       # decoded: not refused as too long
    assert run(capsys, "predict", "--model", bundles["cnn"], "--max-duration", "-1", long)[0] == 2

    from pipeline import vad

    def broken():
        raise vad.VADError("TEN VAD's library cannot be loaded (libc++.so.1: no such file); install ...")

    monkeypatch.setattr(vad, "_detector", broken)
    code, out, err = run(capsys, "predict", "--model", bundles["cnn"], long)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "libc++.so.1" in err
