"""Tests for pipeline.audio: decoding by content, every broken-file case named in the error,
mono/resampling, levels and loudness normalisation. Synthetic files are written to tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline import audio
from pipeline.audio import AudioError

SR = 16000


def tone(*, sr: int = SR, seconds: float = 1.0, hz: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def write(path: Path, y: np.ndarray, *, sr: int = SR, **kwargs) -> Path:
    sf.write(path, y, sr, **kwargs)
    return path


def dominant_hz(y: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[spectrum.argmax()])


# -- decoding ----------------------------------------------------------------------------------
def test_read_mono_wav(tmp_path):
    path = write(tmp_path / "a.wav", tone())
    y, sr = audio.read(path)
    assert (y.shape, y.dtype, sr) == ((SR, 1), np.float32, SR)
    i = audio.info(path)
    assert (i.frames, i.sample_rate, i.channels, i.format, i.subtype) == (SR, SR, 1, "WAV", "PCM_16")
    assert i.duration_s == pytest.approx(1.0)


def test_stereo_is_read_as_two_channels_and_mixed_down(tmp_path):
    left, right = tone(hz=440.0), tone(hz=440.0, amp=0.1)
    path = write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    y, _ = audio.read(path)
    assert y.shape == (SR, 2)
    np.testing.assert_allclose(audio.to_mono(y), (left + right) / 2, atol=1e-6)
    assert audio.load(path, sr=SR).shape == (SR,)


@pytest.mark.parametrize("container", ["FLAC", "OGG", "MP3"])
def test_file_is_decoded_by_content_not_by_name(tmp_path, container):
    if container not in sf.available_formats():
        pytest.skip(f"libsndfile here cannot write {container}")
    path = write(tmp_path / "really_not_a.wav", tone(), format=container)
    assert audio.info(path).format == container
    y = audio.load(path, sr=SR)
    assert abs(len(y) - SR) < 0.01 * SR
    assert dominant_hz(y, SR) == pytest.approx(440.0, abs=2.0)


@pytest.mark.parametrize("file_sr", [8000, 11025, 22050, 24414, 44100, 48000])
def test_unusual_sample_rates_are_resampled(tmp_path, file_sr):
    path = write(tmp_path / f"sr{file_sr}.wav", tone(sr=file_sr, seconds=0.5), sr=file_sr)
    assert audio.info(path).sample_rate == file_sr
    y = audio.load(path, sr=SR)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == pytest.approx(SR * 0.5, abs=2)
    assert dominant_hz(y, SR) == pytest.approx(440.0, abs=3.0)


def test_resample_is_identity_for_equal_rates():
    y = tone()
    assert audio.resample(y, orig_sr=SR, target_sr=SR) is y
    assert audio.resample(y, orig_sr=SR, target_sr=8000).shape == (SR // 2,)


# -- broken files: every message names the file and the problem ---------------------------------
def test_non_audio_bytes_named_wav(tmp_path):
    path = tmp_path / "text.wav"
    path.write_text("this is not audio, just text with a .wav name")
    with pytest.raises(AudioError, match=r"text\.wav: not audio"):
        audio.read(path)
    with pytest.raises(AudioError, match=r"text\.wav: not audio"):
        audio.info(path)


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: zero-length file"):
        audio.read(path)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nothere\.wav: file not found"):
        audio.load(tmp_path / "nothere.wav", sr=SR)


def test_wav_with_zero_frames(tmp_path):
    path = write(tmp_path / "noframes.wav", np.zeros(0, np.float32))
    with pytest.raises(AudioError, match=r"noframes\.wav: no audio frames"):
        audio.read(path)


def truncate(path: Path, *, keep: float | int) -> Path:
    data = path.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    out = path.with_name("cut_" + path.name)
    out.write_bytes(data[:n])
    return out


TRUNCATIONS = [   # (file, seconds, bytes kept: a share or a count, the error it gives)
    ("a.wav", 1.0, 0.5, r"cut_a\.wav: truncated: header says 16000 frames, decoded \d+"),
    ("a.wav", 1.0, 44, r"cut_a\.wav: truncated: header says 16000 frames, decoded 0"),   # header, no data
    ("a.wav", 1.0, 20, r"cut_a\.wav: not audio .*Malformed"),                           # cut inside the header
    ("a.aiff", 1.0, 0.5, r"cut_a\.aiff: truncated: header says 16000 frames"),
    ("a.flac", 2.0, 0.5, r"cut_a\.flac: truncated.*header says 32000 frames, decoded \d+"),
    ("a.mp3", 2.0, 0.5, r"cut_a\.mp3: truncated: header says 32000 frames"),
]


@pytest.mark.parametrize("name, seconds, keep, error", TRUNCATIONS, ids=lambda v: str(v)[:12])
def test_a_truncated_file_names_itself_and_what_is_missing(tmp_path, name, seconds, keep, error):
    if name.endswith(".mp3") and "MP3" not in sf.available_formats():
        pytest.skip("libsndfile here cannot write MP3")
    path = truncate(write(tmp_path / name, tone(seconds=seconds)), keep=keep)
    with pytest.raises(AudioError, match=error):
        audio.read(path)


def test_error_is_a_value_error():
    assert issubclass(AudioError, ValueError)


# -- levels ------------------------------------------------------------------------------------
def test_silent_file_has_minus_inf_levels_and_is_left_alone(tmp_path):
    y = audio.load(write(tmp_path / "silence.wav", np.zeros(SR, np.float32)), sr=SR)
    assert audio.peak_dbfs(y) == -np.inf
    assert audio.rms_dbfs(y) == -np.inf
    for mode in audio.LOUDNESS_MODES:
        np.testing.assert_array_equal(audio.normalize_loudness(y, mode=mode, target_dbfs=-20.0), y)


def test_levels_of_a_full_scale_sine():
    y = tone(amp=1.0, hz=1000.0)
    assert audio.peak_dbfs(y) == pytest.approx(0.0, abs=1e-3)
    assert audio.rms_dbfs(y) == pytest.approx(-3.0103, abs=1e-3)


@pytest.mark.parametrize("mode, target", [("peak", -6.0), ("rms", -23.0)])
def test_normalize_loudness_hits_target(mode, target):
    y = audio.normalize_loudness(tone(amp=0.01), mode=mode, target_dbfs=target)
    level = audio.peak_dbfs(y) if mode == "peak" else audio.rms_dbfs(y)
    assert level == pytest.approx(target, abs=1e-3)
    assert y.dtype == np.float32


def test_rms_normalisation_never_clips_a_peaky_clip():
    y = np.zeros(SR, np.float32)
    y[100] = 0.5                                        # one click: RMS far below its peak
    out = audio.normalize_loudness(y, mode="rms", target_dbfs=-10.0)
    assert np.max(np.abs(out)) == pytest.approx(1.0)    # scaled down to full scale, not clipped
    assert audio.rms_dbfs(out) < -10.0


def test_normalize_loudness_rejects_unknown_mode():
    with pytest.raises(ValueError, match=r"'loud' is not valid; choose one of \['none', 'peak', 'rms'\]"):
        audio.normalize_loudness(tone(), mode="loud", target_dbfs=-20.0)


# -- the real sample, when present ---------------------------------------------------------------
def test_real_sample_decodes(sample_dir):
    paths = sorted(sample_dir.rglob("*.wav"))
    picked = [p for corpus in sorted({p.relative_to(sample_dir).parts[0] for p in paths})
              for p in [q for q in paths if q.relative_to(sample_dir).parts[0] == corpus][:3]]
    assert picked
    for path in picked:
        y = audio.load(path, sr=SR)
        assert y.dtype == np.float32 and y.ndim == 1 and len(y) > SR // 2
        assert np.isfinite(y).all() and audio.peak_dbfs(y) > -40.0


@pytest.mark.parametrize("samples, reason", [
    (np.full((100, 1), np.nan, np.float32), r"x\.wav: NaN samples \(100 of 100\)"),
    (np.full((100, 2), -np.inf, np.float32), r"x\.wav: infinite samples \(200 of 200\)"),
    (np.array([[0.1], [np.nan], [np.inf]], np.float32), r"NaN and infinite samples \(2 of 3\)"),
    (np.full((100, 1), 0.5, np.float32), r"constant signal \(DC at \+0\.500 of full scale\)"),
    (np.full((100, 1), -16384, np.int16), r"constant signal \(DC at -0\.500 of full scale\)"),
])
def test_check_samples_refuses_what_no_recording_holds(samples, reason):
    with pytest.raises(AudioError, match=reason):
        audio.check_samples(samples, name="x.wav")


@pytest.mark.parametrize("samples", [np.zeros((100, 1), np.float32),                 # silence: the callers' rule
                                     np.full((100, 1), 2.0**-16, np.float32),          # below one 16-bit step
                                     np.sin(np.arange(100.0))[:, None].astype(np.float32)])
def test_check_samples_leaves_silence_and_real_signals_alone(samples):
    audio.check_samples(samples, name="x.wav")


def test_a_flac_without_length_is_read_whole_and_bounded(tmp_path):
    from bad_inputs import flac_without_length

    y = np.sin(np.arange(3 * SR) * 0.05).astype(np.float32) * 0.5
    path = tmp_path / "stream.flac"
    path.write_bytes(flac_without_length(y, sr=SR))
    assert audio.info(path).frames is None and audio.info(path).duration_s is None
    got, sr = audio.read(path)
    assert sr == SR and got.shape == (3 * SR, 1)
    np.testing.assert_allclose(got[:, 0], y, atol=2**-15)
    assert audio.read(path, max_duration_s=3.0)[0].shape == (3 * SR, 1)
    with pytest.raises(audio.AudioTooLong, match=r"too long: more than 2\.5 s of audio"):
        audio.read(path, max_duration_s=2.5)


def test_a_long_file_is_refused_from_its_header(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros((10 * SR, 1), np.float32) + 0.01, SR)
    with pytest.raises(audio.AudioTooLong, match=r"too long: 10\.0 s of audio \(from its header\); the limit is 5 s"):
        audio.read(path, max_duration_s=5)


def test_check_samples_has_no_integer_wrap_around():
    clipped = np.array([[32767], [-32768], [0], [100]], np.int16)       # ptp overflows int16
    audio.check_samples(clipped, name="x.wav")
    audio.check_samples(clipped.astype(np.int32) << 16, name="x.wav")


def test_a_bounded_decode_refuses_more_than_8_channels_at_48_khz(tmp_path):
    path = tmp_path / "wide.flac"
    sf.write(path, np.random.default_rng(0).uniform(-0.1, 0.1, (1000, 8)).astype(np.float32), 96000)
    with pytest.raises(audio.AudioTooLong, match=r"8 channels at 96000 Hz: more than the 384,000 samples per second"):
        audio.read(path, max_duration_s=600)
    assert audio.read(path)[0].shape == (1000, 8)                         # unbounded reads take it
