"""Shared fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.egemaps import preload

preload()  # openSMILE before any test module imports TensorFlow (the other order aborts the process)

# The real corpus sample lives next to the project (../shared/corpora-sample); never copied in.
DEFAULT_SAMPLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "corpora-sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """Folder of the real corpus sample (env ``SER_SAMPLE_DIR`` overrides); skip if absent."""
    path = Path(os.environ.get("SER_SAMPLE_DIR", DEFAULT_SAMPLE_DIR))
    if not path.is_dir():
        pytest.skip(f"real corpus sample not found at {path}; set SER_SAMPLE_DIR to its folder")
    return path


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """``{"cnn": folder, "cnn_lstm": folder}``: tiny bundles trained once per session."""
    from fakes import tiny_bundles

    return tiny_bundles(tmp_path_factory.getbasetemp())
