"""Loading the feature cache: rows in the caller's order, and a damaged cache refused with the
file and the fix (a stage killed mid-write, a truncated copy, flipped bytes), never loaded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import dataset
from pipeline.dataset import CacheError


@pytest.fixture
def cache(tmp_path) -> Path:
    """features/original/ravdess with 6 clips of 4 frames x 3 features (float16)."""
    where = tmp_path / "features" / "original" / "ravdess"
    where.mkdir(parents=True)
    x = np.arange(6 * 4 * 3, dtype=np.float16).reshape(6, 4, 3)
    np.save(where / "sequence.npy", x)
    np.save(where / "n_frames.npy", np.full(6, 4, np.int32))
    pd.DataFrame({"clip_id": [f"ravdess:{i}" for i in range(6)]}).to_csv(where / "index.csv", index=False)
    return tmp_path / "features"


def rows(ids) -> pd.DataFrame:
    return pd.DataFrame({"clip_id": [f"ravdess:{i}" for i in ids], "corpus": "ravdess", "label": "angry"})


def test_rows_come_back_in_the_callers_order_and_missing_ones_are_counted(cache):
    f = dataset.load(rows([4, 1, 9]), features_dir=cache, kind="sequence")
    assert f.rows.clip_id.tolist() == ["ravdess:4", "ravdess:1"] and f.missing == ["ravdess:9"]
    assert f.x[0, 0, 0] == 4 * 12 and f.x.dtype == np.float32


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-20])


def _rows_short(path: Path) -> None:
    np.save(path.with_name("n_frames.npy"), np.full(5, 4, np.int32))


def _inf(path: Path) -> None:
    x = np.load(path)
    x[2, 1, 1] = np.inf
    np.save(path, x)


def _bad_index(path: Path) -> None:
    path.with_name("index.csv").write_text("id\nravdess:0\n")


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00" * 40)


@pytest.mark.parametrize("damage, problem", [
    (_truncate, r"sequence\.npy: truncated or corrupt"),
    (_garbage, r"sequence\.npy: truncated or corrupt"),
    (_rows_short, r"sequence\.npy: 6 rows, but n_frames\.npy has 5 and index\.csv 6 \(an interrupted write\)"),
    (_inf, r"sequence\.npy: non-finite values in 1 of the 6 rows read \(corrupt\)"),
    (lambda p: p.unlink(), r"sequence\.npy: missing from the feature cache"),
    (_bad_index, r"index\.csv: unreadable \(KeyError"),
])
def test_a_damaged_cache_is_refused_with_the_file_and_the_fix(cache, damage, problem):
    damage(cache / "original" / "ravdess" / "sequence.npy")
    with pytest.raises(CacheError, match=problem) as err:
        dataset.load(rows(range(6)), features_dir=cache, kind="sequence")
    assert "`dvc checkout features@ravdess`" in str(err.value)
    assert "`dvc repro --force-downstream features@ravdess`" in str(err.value)


def test_a_column_selection_converts_and_checks_only_its_columns(cache):
    """A model reading some of the frame features (``models.<name>.sequence``) gets exactly those
    columns; a non-finite value is refused when it is in them, and is no concern of theirs when not."""
    _inf(cache / "original" / "ravdess" / "sequence.npy")    # row 2, frame 1, column 1
    src = dataset.open_source(rows(range(6)), features_dir=cache, kind="sequence")
    whole = np.load(cache / "original" / "ravdess" / "sequence.npy").astype(np.float32)
    got = src.select(np.array([2, 0])).read(np.array([5, 2, 0]))
    assert got.dtype == np.float32 and np.array_equal(got, whole[[5, 2, 0]][..., [2, 0]])
    with pytest.raises(CacheError, match=r"sequence\.npy: non-finite values in 1 of the 3 rows read"):
        src.select(np.array([1])).read(np.array([5, 2, 0]))
