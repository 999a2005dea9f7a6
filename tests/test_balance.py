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
from pipeline.balance import (MIN_CLIPS, BalanceError, balance_fusion, balance_groups, balance_speaker,
                              labelled_classes, main, rescore, small_groups)
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
    assert (p.argmax(1) == 3).all()              # raw: everything "angry"
    q = balance_speaker(p)
    np.testing.assert_allclose(q.sum(1), 1.0)
    assert (q.argmax(1) == y).all()
    # a speaker without drift keeps their answers
    assert (balance_speaker(np.eye(K)[y] * 0.7 + 0.3 / K).argmax(1) == y).all()


def test_a_class_the_speaker_cannot_show_gets_nothing_and_a_class_never_given_stays_at_zero():
    y = np.repeat(np.arange(K - 1), 2)           # 12 + 2 clips, none of the last class (EMO-DB: no surprised)
    y = np.concatenate([y, [0, 1]])
    p = 0.6 * np.eye(K)[y] + 0.4 / K             # a model that spreads a little onto every class
    classes = np.arange(K) < K - 1
    over_all = balance_speaker(p)
    assert over_all[:, -1].mean() > 2 * p[:, -1].mean()   # balanced over all classes: pushed toward the absent one
    q = balance_speaker(p, classes=classes)
    assert (q[:, -1] == 0).all() and (q.argmax(1) == y).all()
    np.testing.assert_allclose(q.sum(1), 1.0)
    z = p.copy()
    z[:, 2] = 0.0                                 # a class the model never gives
    z /= z.sum(1, keepdims=True)
    assert (balance_speaker(z)[:, 2] == 0).all()
    with pytest.raises(BalanceError, match="at least one true"):
        balance_speaker(p, classes=np.zeros(K, bool))


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
    with pytest.raises(BalanceError, match=r"weights must be positive numbers, got \[1.0, 0.0\]"):
        balance_fusion([m1, m2], [1.0, 0.0], groups)
    with pytest.raises(BalanceError, match=r"group 'b': 13 clip\(s\) of one speaker"):
        balance_groups(np.vstack([a, b[:-1]]), groups[:-1])


def protocol_table(seed: int, drift: int) -> pd.DataFrame:
    """Two folds, each testing one speaker of corpus x and one of corpus y; every class twice a
    speaker, but corpus y has no last class (its column NaN, as a run whose model lacks a class)."""
    y_x = np.repeat(np.arange(K), 2)
    y_y = np.concatenate([np.repeat(np.arange(K - 1), 2), [0, 1]])
    blocks = []
    for run, sx, sy in (("fold0", "x1", "y1"), ("fold1", "x2", "y2")):
        for corpus, speaker, y in (("x", sx, y_x), ("y", sy, y_y)):
            b = pd.DataFrame({"seed": seed, "run": run, "corpus": corpus, "speaker": speaker,
                              "label": np.array(LABELS)[y]})
            b[[f"p_{c}" for c in LABELS]] = 0.4 * np.eye(K)[y] + 0.6 * np.eye(K)[drift]
            blocks.append(b)
    rows = pd.concat(blocks, ignore_index=True)
    rows.insert(2, "clip_id", [f"c{i:02d}" for i in range(len(rows))])
    rows.loc[rows.corpus == "y", f"p_{LABELS[-1]}"] = np.nan
    rows["predicted"] = np.array(LABELS)[rows[[f"p_{c}" for c in LABELS]].fillna(0).to_numpy().argmax(1)]
    return rows


def test_rescored_protocol_predictions_and_the_command(tmp_path, capsys):
    # two seeds whose models drift differently: balancing must not mix a seed's runs with another's
    table = pd.concat([protocol_table(42, drift=3), protocol_table(43, drift=5)], ignore_index=True)
    shuffled = table.sample(frac=1.0, random_state=0)
    out = rescore({"m": shuffled}, [1.0], labels=LABELS)
    assert (out.predicted == out.label).all()
    assert list(zip(out.seed, out.clip_id)) == list(zip(shuffled.seed, shuffled.clip_id))   # the input's row order
    assert out.loc[out.corpus == "y", f"p_{LABELS[-1]}"].isna().all()      # corpus y has no such class: NaN stays
    with pytest.raises(BalanceError, match="different runs or clips"):
        rescore({"m": table, "n": table.iloc[1:]}, [1.0, 1.0], labels=LABELS)
    with pytest.raises(BalanceError, match=r"lack column\(s\) \['corpus'\]"):
        rescore({"m": table.drop(columns="corpus")}, [1.0], labels=LABELS)
    with pytest.raises(BalanceError, match="repeat a"):
        rescore({"m": pd.concat([table, table.iloc[:1]])}, [1.0], labels=LABELS)
    with pytest.raises(BalanceError, match="no classes to balance"):
        rescore({"m": table}, [1.0], labels=[])
    with pytest.raises(BalanceError, match=r"group \(42, 'fold0', 'x1'\): 14 clip\(s\)"):
        rescore({"m": table}, [1.0], labels=LABELS, min_clips=15)
    lone = table[table.speaker != "y2"]      # corpus y's class set would be y1's own labels
    with pytest.raises(BalanceError, match=r"corpus\(es\) \['y'\] have one test speaker.*--all-classes"):
        rescore({"m": lone}, [1.0], labels=LABELS)
    assert (rescore({"m": lone}, [1.0], labels=LABELS, per_corpus_classes=False).predicted != "").all()

    table.to_csv(tmp_path / "m.csv", index=False)
    pd.concat([protocol_table(42, drift=5), protocol_table(43, drift=3)]).to_csv(tmp_path / "n.csv", index=False)
    assert main(["--member", f"m={tmp_path / 'm.csv'}", "--member", f"n={tmp_path / 'n.csv'}",
                 "--weights", "1", "1", "--metrics", str(tmp_path / "s.json"), "--predictions", str(tmp_path / "p.csv")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["protocol"] == "speaker-balanced m+n" and summary["uar_pooled"] == pytest.approx(1.0)
    assert summary["seeds"] == [42, 43]
    raw = folds.summarise(table.fillna(0.0), labels=LABELS)["uar_pooled"]
    assert raw < 0.2                                        # what it was before balancing
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(table)
    with pytest.raises(SystemExit) as exit_:
        main(["--member", f"m={tmp_path / 'missing.csv'}", "--metrics", str(tmp_path / "s.json")])
    assert exit_.value.code == 2 and "missing.csv: no such predictions file" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"balance: group .*: 14 clip\(s\) of one speaker"):
        main(["--member", f"m={tmp_path / 'm.csv'}", "--min-clips", "20", "--metrics", str(tmp_path / "s.json")])


def test_class_sets_from_a_folds_labelled_speakers_and_small_speakers_kept():
    rows = pd.DataFrame({"corpus": ["x", "x", "x", "x", "z"], "speaker": ["a", "b", "c", "d", "e"],
                         "label": [LABELS[0], LABELS[1], LABELS[2], LABELS[3], LABELS[0]],
                         "split": ["train", "val", "test", "excluded", "test"]})
    sets = labelled_classes(rows, labels=LABELS)
    assert sets["x"].tolist() == [c in LABELS[:2] for c in LABELS]   # train and val only: not the test speaker's
    assert sets["z"].all()                                            # no labelled speaker: every class
    assert labelled_classes(rows, labels=LABELS, fold_labels=LABELS[1:])["z"].tolist() == [False] + [True] * (K - 1)

    table = protocol_table(42, drift=3)
    sets = {(run, c): np.array([c == "x" or label != LABELS[-1] for label in LABELS])
            for run in ("fold0", "fold1") for c in ("x", "y")}
    pd.testing.assert_frame_equal(rescore({"m": table}, [1.0], labels=LABELS, fold_classes=sets),
                                  rescore({"m": table}, [1.0], labels=LABELS))   # the same sets as the table's
    with pytest.raises(BalanceError, match=r"no class set for \(run, corpus\) \[\('fold1', 'y'\)\]"):
        rescore({"m": table}, [1.0], labels=LABELS, fold_classes={k: v for k, v in sets.items() if k != ("fold1", "y")})
    # two seeds: x1 has 12 clips in each (24 rows over both), so it stays unbalanced in both
    both = pd.concat([protocol_table(42, drift=3), protocol_table(43, drift=5)], ignore_index=True)
    small = both[~both.clip_id.isin(both.clip_id[both.speaker == "x1"].iloc[:2])]
    cols = [f"p_{c}" for c in LABELS]
    for members in ([small], [small, small.assign(**{c: small[c] * 0 + 1 / K for c in cols})]):
        out = rescore({str(i): m for i, m in enumerate(members)}, [1.0] * len(members), labels=LABELS,
                      fold_classes=sets, keep_small=True)
        kept = out.speaker == "x1"
        assert not out.balanced[kept].any() and out.balanced[~kept].all()
        plain = fuse_probabilities([m[cols].fillna(0).to_numpy() for m in members], [1.0] * len(members))
        np.testing.assert_allclose(out.loc[kept, cols].fillna(0), plain[kept.to_numpy()])   # the plain (fused) output
        assert (out.predicted[~kept] == out.label[~kept]).all()
    assert small_groups(["a"] * 13 + ["b"] * 14).tolist() == [True] * 13 + [False] * 14
    with pytest.raises(BalanceError, match="12 clip"):
        rescore({"m": small}, [1.0], labels=LABELS, fold_classes=sets)


COMMITTED = ROOT / "metrics" / "real"
README_ROWS = {   # README, "Speaker-balanced decoding": UAR mean, std, EMO-DB, RAVDESS, SAVEE, lowest recall
    ("cnn_logmel",): (0.601, 0.016, 0.702, 0.614, 0.472, 0.32),   # the cnn on the log-mel family, the default until 2026-12-05
    ("svm",): (0.575, 0.074, 0.714, 0.576, 0.433, 0.27),
    ("svm_compare",): (0.588, 0.061, 0.668, 0.569, 0.541, 0.30),
    ("cnn_lstm_logmel",): (0.590, 0.036, 0.619, 0.608, 0.490, 0.29),   # the cnn_lstm on the log-mel family, the default until 2026-12-06
    ("svm_ge2e",): (0.672, 0.056, 0.778, 0.659, 0.632, 0.30),
    ("cnn",): (0.687, 0.082, 0.765, 0.709, 0.522, 0.41),   # the cnn on the voice encoder's frames, the default since 2026-12-05
    ("cnn_lstm",): (0.677, 0.063, 0.777, 0.694, 0.526, 0.39),   # the cnn_lstm on the encoder's frames, the default since 2026-12-06
    ("cnn_logmel", "svm", "svm_compare"): (0.704, 0.048, 0.810, 0.702, 0.616, 0.45),
    ("cnn_logmel", "cnn_lstm_logmel", "svm", "svm_compare"): (0.717, 0.055, 0.804, 0.723, 0.627, 0.44),
    ("cnn_logmel", "cnn_lstm_logmel", "svm", "svm_compare", "svm_ge2e"): (0.757, 0.058, 0.827, 0.759, 0.697, 0.50),
    ("cnn", "cnn_lstm_logmel", "svm", "svm_compare", "svm_ge2e"): (0.775, 0.060, 0.844, 0.784, 0.686, 0.55),   # the default fusion 2026-12-05
    ("cnn", "cnn_lstm", "svm", "svm_compare", "svm_ge2e"): (0.776, 0.069, 0.861, 0.786, 0.666, 0.53),   # the default fusion
}


@pytest.mark.skipif(not (COMMITTED / "svm_predictions.csv.gz").is_file(), reason="no committed real predictions")
@pytest.mark.parametrize("models", list(README_ROWS))
def test_the_committed_real_predictions_rescore_to_the_readme_table(tmp_path, models):
    """Each row of the README's table, from the scoreboard's committed fold predictions."""
    members = [a for m in models for a in ("--member", f"{m}={COMMITTED / f'{m}_predictions.csv.gz'}")]
    assert main(members + ["--metrics", str(tmp_path / "s.json")]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    got = (s["uar_mean"], s["uar_std"], *(s["per_corpus"][c]["uar_mean"] for c in ("emodb", "ravdess", "savee")),
           min(r for c in s["per_corpus"].values() for r in c["recall"].values()))
    assert tuple(round(v, 3) for v in got[:5]) + (round(got[5], 2),) == README_ROWS[models]


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


def test_classes_outside_the_speakers_set_get_zero(capsys, bundles, speaker_clips):
    from pipeline.infer import Predictor

    keep = [c for c in LABELS if c != "surprised"]
    code, rows, _ = predict_json(capsys, "predict", "--json", "--one-speaker", "--balance", "--classes",
                                 ", ".join(keep), "--model", bundles["cnn"], *speaker_clips)
    assert code == 0 and all(r["probabilities"]["surprised"] == 0 and r["emotion"] != "surprised" for r in rows)
    predictor = Predictor(bundles["cnn"])
    ys = [predictor.load(p) for p in speaker_clips]
    want = balance_speaker(predictor.probabilities(ys, one_speaker=True), classes=np.array([c in keep for c in LABELS]))
    np.testing.assert_allclose([[r["probabilities"][c] for c in LABELS] for r in rows], want, atol=1e-6)
    code, _, err = predict_json(capsys, "predict", "--one-speaker", "--balance", "--classes", "angry,bored",
                                "--model", bundles["cnn"], *speaker_clips)
    assert code == 2 and "--classes: class(es) ['bored'] not among this model's labels" in err
    from pipeline.infer import InferenceError

    for bad in ("angry", []):     # a bare string would be read letter by letter
        with pytest.raises(InferenceError, match="non-empty list of labels"):
            predictor.class_mask(bad)
    code, _, err = predict_json(capsys, "predict", "--classes", "angry", "--model", bundles["cnn"], *speaker_clips)
    assert code == 2 and "--classes only applies with --balance" in err


def test_ser_predict_balance_refusals(capsys, bundles, speaker_clips, monkeypatch):
    code, _, err = predict_json(capsys, "predict", "--balance", "--model", bundles["cnn"], *speaker_clips)
    assert code == 2 and "--balance needs --one-speaker" in err
    code, _, err = predict_json(capsys, "predict", "--one-speaker", "--balance", "--model", bundles["cnn"],
                                *speaker_clips[:3])
    assert code == 2 and f"3 clip(s) of one speaker: speaker-balanced decoding needs at least {MIN_CLIPS}" in err
    # 14 inputs of which one is unreadable: its line on stderr, and 13 clips are too few to balance
    code, _, err = predict_json(capsys, "predict", "--one-speaker", "--balance", "--model", bundles["cnn"],
                                *speaker_clips[:-1], speaker_clips[0].parent / "missing.wav")
    assert code == 2 and "missing.wav" in err and "13 clip(s) of one speaker" in err
    # the library refuses before any feature work
    from pipeline import infer
    from pipeline.infer import InferenceError, Predictor

    predictor = Predictor(bundles["cnn"])
    ys = [predictor.load(p) for p in speaker_clips[:3]]
    monkeypatch.setattr(infer, "prepare", lambda *a, **k: pytest.fail("features computed before the refusal"))
    with pytest.raises(InferenceError, match=r"3 clip\(s\) of one speaker"):
        predictor.probabilities(ys, one_speaker=True, balance=True)
    with pytest.raises(InferenceError, match="0 clip"):
        predictor.predict_clips([], one_speaker=True, balance=True)
    with pytest.raises(InferenceError, match="one_speaker=True"):
        predictor.probabilities(ys, balance=True)
    from pipeline.cli import parser

    assert f"at least {MIN_CLIPS} clips" in parser()._subparsers._group_actions[0].choices["predict"].format_help()


@pytest.mark.skipif(not (COMMITTED / "svm_predictions.csv.gz").is_file(), reason="no committed real predictions")
@pytest.mark.parametrize("name", ["cnn", "cnn_logmel", "cnn_lstm", "cnn_lstm_logmel", "svm", "svm_compare", "svm_ge2e", "fusion"])
def test_the_protocol_stages_balanced_metrics_of_the_committed_real_runs(name):
    """metrics/real/<model>_protocol_balanced.json is what the protocol stage's --balanced
    computes from the committed fold predictions (it pins the committed figures; the README
    rows' test above re-derives them through the command's other path, the table's own class
    sets). Each fold's rows are rebuilt from them: in the
    development folds every speaker is tested exactly once, so a fold's labelled speakers of a
    tested corpus are the ones the other folds test (TESS, train-only, is never tested)."""
    from pipeline.protocol import Fold, balanced_run
    import yaml
    fusion = yaml.safe_load((ROOT / "params.yaml").read_text())["models"]["fusion"]
    members, weights = (fusion["members"], fusion["weights"]) if name == "fusion" else ([name], [1.0])
    tables = {m: pd.read_csv(COMMITTED / f"{m}_predictions.csv.gz") for m in members}
    first = next(iter(tables.values()))
    labels = [c for c in LABELS if f"p_{c}" in first.columns]
    one = first[first.seed == first.seed.iloc[0]]
    fold_list = [Fold(run, one.assign(split=np.where(one.run == run, "test", "train")), labels)
                 for run in dict.fromkeys(one.run)]
    seeds = [int(s) for s in dict.fromkeys(first.seed)]
    _, got = balanced_run(tables, weights, protocol="speaker_kfold", seeds=seeds, fold_list=fold_list, labels=labels)
    want = json.loads((COMMITTED / f"{name}_protocol_balanced.json").read_text())
    got, want = flat(json.loads(json.dumps(got))), flat(want)
    floats = {k for k, v in want.items() if isinstance(v, float)}
    assert got.keys() == want.keys() and all(got[k] == want[k] for k in want.keys() - floats)
    assert {k: got[k] for k in floats} == pytest.approx({k: want[k] for k in floats}, rel=1e-9, abs=1e-12)
    if name == "fusion":
        assert (round(got["uar_mean"], 3), round(got["uar_std"], 3)) == README_ROWS[tuple(members)][:2]


def flat(d: dict, prefix: str = "") -> dict:
    """A nested dict as {"a.b": leaf}, so pytest.approx can compare it."""
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out
