"""Shared fixtures."""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from pipeline.egemaps import preload

preload()  # openSMILE before any test module imports TensorFlow (the other order aborts the process)

# The real corpus sample lives next to the project (../shared/corpora-sample); never copied in.
DEFAULT_SAMPLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "corpora-sample"


def pytest_collection_modifyitems(session, config, items):
    """tests/test_pipeline.py first (it builds the shared tiny repo, ``tiny_build``) and
    tests/test_pipeline_experiments.py (which copies that build) after half of the other files.
    Under pytest-xdist (``--dist loadfile``: each worker takes the next file as it frees up) one
    worker builds while the other runs unit tests, which by then take about as long as the build;
    and the experiments file, the longest after the build (about 5 min), no longer ends the run
    with one worker idle while the other runs it (CI at 845177d: the durations add up to 1,973 s of
    2 x 1,030 s)."""
    first = [i for i in items if i.path.name == "test_pipeline.py"]
    later = [i for i in items if i.path.name == "test_pipeline_experiments.py"]
    ends = {id(i) for i in first + later}
    rest = [i for i in items if id(i) not in ends]
    files = list(dict.fromkeys(i.path for i in rest))
    half = set(files[:len(files) // 2])
    items[:] = first + [i for i in rest if i.path in half] + later + [i for i in rest if i.path not in half]


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """Folder of the real corpus sample (env ``SER_SAMPLE_DIR`` overrides); skip if absent."""
    path = Path(os.environ.get("SER_SAMPLE_DIR", DEFAULT_SAMPLE_DIR))
    if not path.is_dir():
        pytest.skip(f"real corpus sample not found at {path}; set SER_SAMPLE_DIR to its folder")
    return path


def shared_tmp(tmp_path_factory) -> Path:
    """The temporary folder every pytest-xdist worker of this session sees
    (pytest-of-<user>/pytest-<n>/), or the session's own without xdist: where a fixture built
    once for all workers lives, behind a file lock."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """``{"cnn": folder, "cnn_lstm": folder, ...}``: tiny bundles (``fakes.tiny_bundles``) trained
    once per session: under pytest-xdist by the first worker to ask, in the workers' shared
    temporary folder, while the others wait (a file lock) instead of training their own."""
    from fakes import tiny_bundles

    root = shared_tmp(tmp_path_factory)
    index = root / "tiny-bundles.json"
    with (root / "tiny-bundles.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not index.exists():
            built = tiny_bundles(root / "tiny-bundles")
            index.write_text(json.dumps({name: str(path) for name, path in built.items()}))
    return {name: Path(path) for name, path in json.loads(index.read_text()).items()}
