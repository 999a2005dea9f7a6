"""Split invariants: speaker-disjoint partitions, every row once, determinism, proportions."""
import numpy as np
import pandas as pd
import pytest

from pipeline.params import ParamsError
from pipeline.speakers import assign_speakers, check_disjoint, partition_sizes
from pipeline.split import split
from pipeline.vocab import check_selection, map_label

PROPORTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
CLASSES = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def fake_manifest(n_speakers: dict[str, int], *, clips: int = 4, seed: int = 0) -> pd.DataFrame:
    """Rows for corpora with the given speaker counts, alternating sex, every emotion."""
    rng = np.random.default_rng(seed)
    rows = []
    for corpus, n in n_speakers.items():
        for s in range(n):
            for e in ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised", "boredom"):
                for k in range(clips):
                    rows.append({"clip_id": f"{corpus}:{s}-{e}-{k}", "corpus": corpus, "speaker": f"{corpus}:{s:02d}",
                                 "gender": "male" if s % 2 else "female", "emotion": e,
                                 "duration_s": float(rng.uniform(1, 3))})
    return pd.DataFrame(rows)


def run(manifest, seed=42, assign=None, classes=CLASSES, merge=None):
    return split(manifest, classes=classes, merge=merge or {"calm": "neutral"}, proportions=PROPORTIONS,
                 assign=assign or {}, seed=seed)


def check_invariants(manifest, rows, classes=CLASSES, merge=None):
    merge = merge or {"calm": "neutral"}
    check_disjoint(rows)
    assert rows.clip_id.is_unique
    expected = manifest[manifest.emotion.map(lambda e: map_label(e, classes=classes, merge=merge)).notna()]
    assert set(rows.clip_id) == set(expected.clip_id)
    assert rows.split.isin(["train", "val", "test"]).all()
    assert set(rows.label) <= set(classes)


def test_no_speaker_in_two_partitions_and_every_row_once():
    manifest = fake_manifest({"ravdess": 24, "cremad": 91, "emodb": 10, "savee": 4, "tess": 2})
    rows, notes = run(manifest, assign={"savee": {"train": ["00", "01"], "val": ["02"], "test": ["03"]}})
    check_invariants(manifest, rows)
    assert notes["tess"].startswith("only 2 speaker")
    assert set(rows[rows.corpus == "tess"].split) == {"train"}
    savee = rows[rows.corpus == "savee"].groupby("speaker").split.first().to_dict()
    assert savee == {"savee:00": "train", "savee:01": "train", "savee:02": "val", "savee:03": "test"}


def test_same_seed_same_split_and_other_seed_differs():
    manifest = fake_manifest({"ravdess": 24, "cremad": 40})
    a, _ = run(manifest, seed=1)
    b, _ = run(manifest, seed=1)
    c, _ = run(manifest, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.split.equals(c.split)


def test_adding_a_corpus_leaves_other_corpora_unchanged():
    a, _ = run(fake_manifest({"ravdess": 24}))
    b, _ = run(fake_manifest({"ravdess": 24, "emodb": 10}))
    pd.testing.assert_frame_equal(a, b[b.corpus == "ravdess"].reset_index(drop=True))


@pytest.mark.parametrize("n", [3, 4, 7, 10, 24, 91])
def test_proportions_within_tolerance_and_sex_balanced(n):
    manifest = fake_manifest({"cremad": n}, clips=1)
    rows, _ = run(manifest)
    check_invariants(manifest, rows)
    spk = rows.groupby("speaker").agg(split=("split", "first"), gender=("gender", "first"))
    counts = spk.split.value_counts()
    for part, p in PROPORTIONS.items():
        assert counts.get(part, 0) >= 1
        if n >= 5:  # below that, one speaker per partition is the binding rule
            assert abs(counts.get(part, 0) - p * n) <= 1.0 + 1e-9  # within one speaker of the target
    for part in ("val", "test"):
        sexes = spk[spk.split == part].gender.value_counts()
        if counts[part] >= 2:
            assert sexes.get("male", 0) >= 1 and sexes.get("female", 0) >= 1


def test_partition_sizes_sum_and_minimums():
    for n in range(3, 60):
        s = partition_sizes(n, PROPORTIONS)
        assert sum(s.values()) == n and min(s.values()) >= 1


def test_assign_speakers_is_a_function_of_the_rng():
    speakers = {f"x:{i}": "male" if i % 2 else "female" for i in range(20)}
    a = assign_speakers(speakers, proportions=PROPORTIONS, rng=np.random.default_rng(5))
    b = assign_speakers(speakers, proportions=PROPORTIONS, rng=np.random.default_rng(5))
    assert a == b and set(a) == set(speakers)


def test_fixed_assignment_must_place_every_speaker():
    manifest = fake_manifest({"savee": 4})
    with pytest.raises(ParamsError, match=r"split.assign.savee does not place speaker\(s\) \['savee:03'\]"):
        run(manifest, assign={"savee": {"train": ["00", "01"], "test": ["02"]}})


def test_class_selection_and_merges():
    manifest = fake_manifest({"ravdess": 6})
    four = ["neutral", "happy", "sad", "angry"]
    rows, _ = run(manifest, classes=four, merge={"calm": "neutral"})
    check_invariants(manifest, rows, classes=four)
    assert set(rows.label) == set(four)
    assert (rows[rows.emotion == "calm"].label == "neutral").all()
    assert not rows.emotion.isin(["boredom", "fearful"]).any()


@pytest.mark.parametrize("classes,merge,match", [
    (["neutral", "joy"], {}, "'joy' is not in the vocabulary"),
    (["neutral", "neutral"], {}, "lists a class twice"),
    (["neutral", "sad"], {"calm": "happy"}, "not in split.classes"),
    (["neutral", "calm"], {"calm": "neutral"}, "both merged"),
])
def test_bad_selection_is_refused(classes, merge, match):
    with pytest.raises(ParamsError, match=match):
        check_selection(classes=classes, merge=merge)


def test_check_disjoint_catches_a_leak():
    rows = pd.DataFrame({"speaker": ["a", "a", "b"], "split": ["train", "test", "test"]})
    with pytest.raises(ValueError, match=r"more than one partition: \['a'\]"):
        check_disjoint(rows)


def test_fixed_assignment_reads_numeric_names_and_refuses_a_speaker_listed_twice():
    from pipeline.split import fixed_assignment
    speakers = ["ravdess:01", "ravdess:02", "ravdess:10"]
    # YAML reads `[01, 02]` as [1, 2]
    assert fixed_assignment("ravdess", speakers, {"train": [1, "02"], "test": [10]}) == {
        "ravdess:01": "train", "ravdess:02": "train", "ravdess:10": "test"}
    with pytest.raises(ParamsError, match=r"places speaker 1 twice \(train and test\)"):
        fixed_assignment("ravdess", speakers, {"train": [1, 2], "test": [10, 1]})
