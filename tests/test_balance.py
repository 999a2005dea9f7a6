"""Speaker-balanced decoding (pipeline/balance.py): the correction, its refusals, the rescoring
of protocol predictions, and `ser predict --one-speaker --balance` with a bundle alone."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipeline import folds
from pipeline.balance import (MIN_CLIPS, BalanceError, balance_fusion, balance_groups, balance_speaker, main,
                              rescore)
from pipeline.bundle import fuse_probabilities
from fakes import LABELS, SR, speech

ROOT = Path(__file__).resolve().parents[1]
K = len(LABELS)


def drifted(labels: np.ndarray, *, drift: int, strength: float = 0.6) -> np.ndarray:
    """Probabilities of a model that hears every clip of one speaker as a bit of class ``drift``."""
    return (1 - strength) * np.eye(K)[labels] + strength * np.eye(K)[drift]


def test_a_speakers_drift_toward_one_class_is_removed():
    y = np.repeat(np.arange(K), 2)               # 14 clips, every class twice
    p = drifted(y, drift=3)
    assert (p.argmax(1) == 3).all()              # raw: everything "angry" (ties broken toward it)
    q = balance_speaker(p)
    np.testing.assert_allclose(q.sum(1), 1.0)
    assert (q.argmax(1) == y).all()
    # a speaker without drift keeps their answers
    assert (balance_speaker(np.eye(K)[y] * 0.7 + 0.3 / K).argmax(1) == y).all()


def test_too_few_clips_and_bad_probabilities_are_refused_with_the_fix():
    with pytest.raises(BalanceError, match=rf"13 clip\(s\) of one speaker: .* at least {MIN_CLIPS}"):
        balance_speaker(np.full((13, K), 1 / K))
    with pytest.raises(BalanceError, match="finite and non-negative"):
        balance_speaker(np.full((MIN_CLIPS, K), np.nan))
    with pytest.raises(BalanceError, match="shape"):
        balance_speaker(np.full(K, 1 / K))


def test_each_group_is_balanced_with_its_own_clips_and_a_fusion_member_by_member():
    y = np.repeat(np.arange(K), 2)
    a, b = drifted(y, drift=3), drifted(y, drift=5)
    groups = ["a"] * len(y) + ["b"] * len(y)
    both = balance_groups(np.vstack([a, b]), groups)
    np.testing.assert_allclose(both, np.vstack([balance_speaker(a), balance_speaker(b)]))
    m1, m2 = np.vstack([a, b]), np.vstack([b, a])
    want = balance_groups(fuse_probabilities([balance_groups(m1, groups), balance_groups(m2, groups)], [2.0, 1.0]),
                          groups)
    np.testing.assert_allclose(balance_fusion([m1, m2], [2.0, 1.0], groups), want)
    np.testing.assert_allclose(balance_fusion([m1], [1.0], groups), balance_groups(m1, groups))   # once, not twice
    with pytest.raises(BalanceError, match="2 member probability tables for 1 weights"):
        balance_fusion([m1, m2], [1.0], groups)


def protocol_table(seed: int, drift: int) -> pd.DataFrame:
    y = np.tile(np.repeat(np.arange(K), 2), 2)
    rows = pd.DataFrame({"seed": seed, "run": np.repeat(["fold0", "fold1"], 2 * K), "clip_id": [f"c{i}" for i in range(4 * K)],
                         "corpus": "x", "speaker": np.repeat(["s1", "s2"], 2 * K), "label": np.array(LABELS)[y]})
    p = drifted(y, drift=drift)
    rows[[f"p_{c}" for c in LABELS]] = p
    rows["predicted"] = np.array(LABELS)[p.argmax(1)]
    return rows


def test_rescored_protocol_predictions_and_the_command(tmp_path, capsys):
    table = protocol_table(42, drift=3)
    out = rescore({"m": table.sample(frac=1.0, random_state=0)}, [1.0], labels=LABELS)
    assert (out.predicted == out.label).all() and list(out.clip_id) == list(table.sort_values(["seed", "run", "clip_id"]).clip_id)
    with pytest.raises(BalanceError, match="different runs or clips"):
        rescore({"m": table, "n": table.iloc[1:]}, [1.0, 1.0], labels=LABELS)

    table.to_csv(tmp_path / "m.csv", index=False)
    protocol_table(42, drift=5).to_csv(tmp_path / "n.csv", index=False)
    assert main(["--member", f"m={tmp_path / 'm.csv'}", "--member", f"n={tmp_path / 'n.csv'}",
                 "--weights", "1", "1", "--metrics", str(tmp_path / "s.json"), "--predictions", str(tmp_path / "p.csv")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["protocol"] == "speaker-balanced m+n" and summary["uar_pooled"] == pytest.approx(1.0)
    raw = folds.summarise(table, labels=LABELS)["uar_pooled"]
    assert raw == pytest.approx(1 / K)                     # what it was before balancing
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(table)
    with pytest.raises(SystemExit) as exit_:
        main(["--member", f"m={tmp_path / 'missing.csv'}", "--metrics", str(tmp_path / "s.json")])
    assert exit_.value.code == 2 and "missing.csv: no such predictions file" in capsys.readouterr().err


COMMITTED = ROOT / "metrics" / "real"


@pytest.mark.skipif(not (COMMITTED / "svm_predictions.csv.gz").is_file(), reason="no committed real predictions")
def test_the_committed_real_predictions_rescore_to_the_readme_figure(tmp_path):
    """README, "Speaker-balanced decoding": cnn + svm + svm_compare of the scoreboard's runs."""
    members = [f"{m}={COMMITTED / f'{m}_predictions.csv.gz'}" for m in ("cnn", "svm", "svm_compare")]
    assert main([a for m in members for a in ("--member", m)] + ["--metrics", str(tmp_path / "s.json")]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert (round(s["uar_mean"], 3), round(s["uar_std"], 3)) == (0.692, 0.048)
    assert min(r for c in s["per_corpus"].values() for r in c["recall"].values()) >= 0.35


# -- ser predict --one-speaker --balance --------------------------------------------------------
@pytest.fixture(scope="module")
def speaker_clips(tmp_path_factory) -> list[Path]:
    """MIN_CLIPS clips of one synthetic speaker, every class twice."""
    root = tmp_path_factory.mktemp("speaker")
    paths = []
    for i in range(MIN_CLIPS):
        emotion = LABELS[i % K]
        paths.append(root / f"{i:02d}_{emotion}.wav")
        sf.write(paths[-1], speech(1.6, emotion=emotion, seed=7), SR, subtype="PCM_16")
    return paths


def predict_json(capsys, *argv) -> tuple[int, list[dict], str]:
    from pipeline.cli import main as ser

    code = ser([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize("name", ["cnn", "fusion"])
def test_ser_predict_balances_one_speakers_clips_as_the_rescoring_does(capsys, bundles, speaker_clips, name):
    from pipeline import bundle as B
    from pipeline.infer import Predictor

    code, rows, _ = predict_json(capsys, "predict", "--json", "--one-speaker", "--balance", "--model", bundles[name],
                                 *speaker_clips)
    assert code == 0 and len(rows) == MIN_CLIPS
    got = np.array([[r["probabilities"][c] for c in LABELS] for r in rows])
    predictor = Predictor(bundles[name])
    ys = [predictor.load(p) for p in speaker_clips]
    raw = predictor.probabilities(ys, one_speaker=True)
    if name == "fusion":        # members one by one, then the fused probabilities
        b = B.load(bundles[name])
        assert isinstance(b, B.FusionBundle) and b.weights == [2.0, 1.0]
        members = [predictor.probabilities(ys, one_speaker=True) for predictor in
                   (Predictor(bundles["cnn"]), Predictor(bundles["svm"]))]
        np.testing.assert_allclose(fuse_probabilities(members, [2.0, 1.0]), raw, atol=1e-6)
        want = balance_fusion(members, [2.0, 1.0], [0] * MIN_CLIPS)
    else:
        want = balance_speaker(raw)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(got, raw, atol=1e-3)


def test_ser_predict_balance_refusals(capsys, bundles, speaker_clips):
    code, _, err = predict_json(capsys, "predict", "--balance", "--model", bundles["cnn"], *speaker_clips)
    assert code == 2 and "--balance needs --one-speaker" in err
    code, _, err = predict_json(capsys, "predict", "--one-speaker", "--balance", "--model", bundles["cnn"],
                                *speaker_clips[:3])
    assert code == 2 and f"3 clip(s) of one speaker: speaker-balanced decoding needs at least {MIN_CLIPS}" in err
    from pipeline.cli import parser

    assert f"at least {MIN_CLIPS} clips" in parser()._subparsers._group_actions[0].choices["predict"].format_help()
