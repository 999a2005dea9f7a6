"""Speech presence (TEN VAD): speech found in real and demo-voice speech, none in noise, tones,
hum or silence, frame counts and rates, and a clear error when the detector cannot load."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from pipeline import audio, vad
from fakes import SR, speech


def seconds(y: np.ndarray, sr: int = SR) -> float:
    y = audio.normalize_loudness(np.asarray(y, np.float32), mode="rms", target_dbfs=-23.0)
    return vad.speech_seconds(vad.speech_probabilities(y, sr=sr))


def test_frames_are_16_ms_and_the_partial_frame_is_dropped():
    p = vad.speech_probabilities(np.zeros(SR + 100, np.float32), sr=SR)
    assert p.shape == (SR // 256,) and p.dtype == np.float32 and vad.FRAME_S == 0.016
    assert vad.speech_probabilities(np.zeros(100, np.float32), sr=SR).shape == (0,)


def test_demo_voice_speech_is_found_at_any_rate():
    y = speech(3.0, emotion="happy", seed=1)
    assert seconds(y) > 1.0
    assert abs(seconds(audio.resample(y, orig_sr=SR, target_sr=44100), sr=44100) - seconds(y)) < 0.2


@pytest.mark.parametrize("make", [
    lambda: 0.1 * np.random.default_rng(0).standard_normal(3 * SR),
    lambda: 0.3 * np.sin(2 * np.pi * 1000 * np.arange(3 * SR) / SR),
    lambda: sum(0.1 * np.sin(2 * np.pi * 50 * k * np.arange(3 * SR) / SR) / k for k in range(1, 6)),
    lambda: 1e-4 * np.random.default_rng(1).standard_normal(3 * SR),          # dither, normalised up to -23 dBFS
], ids=["white noise", "1 kHz tone", "50 Hz hum", "dither"])
def test_noise_tones_and_hum_hold_no_speech(make):
    assert seconds(make()) < 0.3


def test_every_clip_of_the_real_sample_holds_speech(sample_dir):
    files = sorted(p for p in sample_dir.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    assert files
    least = min(seconds(audio.load(f, sr=SR)) for f in files)
    assert least >= 0.5, f"a real clip holds only {least:.2f} s of speech"


def test_a_missing_cpp_runtime_is_one_clear_error(monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("libc++.so.1: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(ctypes, "CDLL", fail)
    with pytest.raises(vad.VADError, match=r"libc\+\+\.so\.1.*apt-get install libc\+\+1.*infer\.min_speech_s: 0"):
        vad.speech_probabilities(np.zeros(SR, np.float32), sr=SR)
