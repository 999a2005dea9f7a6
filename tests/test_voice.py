"""The GE2E voice-encoder features (pipeline.voice): the numpy LSTM against Keras's, the partial
utterances, the mel input, the checkpoint reader's allow-list, and the real weights."""
from __future__ import annotations

import importlib.util
import os
import pickle

import librosa
import numpy as np
import pytest
import soundfile as sf

from pipeline import voice

SR = voice.SR


def _weights_or_skip():
    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip("the GE2E weights (Resemblyzer wheel) are not installed: "
                    "pip install --no-deps --require-hashes -r requirements-weights.txt")
    return voice.weights()


def _tone(seconds: float, f0: float = 140.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8)).astype(np.float32) * 0.1


def test_lstm_outputs_equal_a_keras_lstm_stack():
    import keras

    rng = np.random.default_rng(0)
    w, layers = {}, []
    for layer in range(voice.LAYER + 1):
        inputs = voice.N_MELS if layer == 0 else voice.HIDDEN
        w[f"w_ih{layer}"] = rng.normal(scale=0.3, size=(inputs, 4 * voice.HIDDEN))
        w[f"w_hh{layer}"] = rng.normal(scale=0.1, size=(voice.HIDDEN, 4 * voice.HIDDEN))
        w[f"b{layer}"] = rng.normal(scale=0.5, size=4 * voice.HIDDEN)
        layers.append(keras.layers.LSTM(voice.HIDDEN, return_sequences=True, dtype="float64"))
    x = rng.normal(size=(2, 12, voice.N_MELS))
    model = keras.Sequential([keras.Input((12, voice.N_MELS), dtype="float64"), *layers])
    for layer, lstm in enumerate(layers):
        lstm.set_weights([w[f"w_ih{layer}"], w[f"w_hh{layer}"], w[f"b{layer}"]])
    expected = np.asarray(model(x))
    got = voice.lstm_outputs(x, w)
    assert got.shape == (2, 12, voice.HIDDEN) and np.abs(got).max() > 0.1  # not saturated at 0
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_partials_follow_resemblyzers_rule():
    for n in (0, 1, 100, 16000):                     # anything shorter than a partial: one, at 0
        assert voice.partials(n) == [0]
    starts = voice.partials(10 * SR)
    assert len(starts) > 3 and set(np.diff(starts)) == {voice.PARTIAL_STEP}
    # 3 s: 301 frames, starts below 301 - 160 + 77 + 1 = 219; the last (154) covers 91 % of its 160
    assert voice.partials(48000) == [0, 77, 154]
    # the partial at frame 77 covers exactly 75 % at 31520 samples: kept; one sample less, dropped
    assert voice.partials(31520) == [0, 77]
    assert voice.partials(31519) == [0]
    assert voice.partials(25440) == [0]              # 51 % covered


@pytest.mark.filterwarnings("ignore:n_fft=400 is too large for input signal:UserWarning")   # librosa's, below one window
@pytest.mark.parametrize("n", [1, 199, 200, 201, 399, 400, 401, 560, 561, 16000, 16159, 48123])
def test_the_mel_input_has_librosas_bytes(n):
    """voice.melspectrogram is librosa's melspectrogram with the encoder's settings, to the bit
    (the frame feature ``ge2e`` and the committed dvc.lock hashes depend on it), from a clip
    shorter than one window to several seconds."""
    y = np.random.default_rng(n).normal(size=n) * 0.1
    want = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=400, hop_length=160, n_mels=40).T
    got = voice.melspectrogram(y)
    assert got.shape == want.shape and got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_the_mel_input_has_librosas_bytes_on_real_speech(sample_dir):
    import soxr

    paths = [p for corpus in ("emodb", "ravdess", "savee", "tess") for p in sorted((sample_dir / corpus).rglob("*.wav"))[:2]]
    assert paths, f"no WAV files under {sample_dir}"
    for path in paths:                                   # 16, 48, 44.1 and 24.4 kHz originals, resampled
        y, sr = sf.read(path, dtype="float64", always_2d=True)
        y = soxr.resample(y.mean(axis=1), sr, SR)
        want = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=400, hop_length=160, n_mels=40).T
        assert voice.melspectrogram(y).tobytes() == want.tobytes(), path


def test_mel_partials_shape_level_invariance_and_silence():
    y = _tone(3.0).astype(np.float64)                # float64 gains: no float32 rounding of the input
    mel = voice.mel_partials(y)
    assert mel.shape == (3, voice.PARTIAL, voice.N_MELS) and (mel >= 0).all() and mel.max() > 0
    np.testing.assert_allclose(voice.mel_partials(y * 0.01), mel, rtol=1e-6, atol=1e-12 * mel.max())
    np.testing.assert_allclose(voice.mel_partials(y * 5.0), mel, rtol=1e-6, atol=1e-12 * mel.max())
    # the partials overlap: frame 77 of the first is frame 0 of the second
    np.testing.assert_allclose(mel[0, voice.PARTIAL_STEP], mel[1, 0], rtol=1e-9)
    silent = voice.mel_partials(np.zeros(20000, np.float32))
    assert silent.shape == (1, voice.PARTIAL, voice.N_MELS) and np.isfinite(silent).all()


class _NotAllowed:
    """Pickled by reference to this module, which the weights reader must refuse to import."""


@pytest.mark.parametrize("payload", [_NotAllowed(), os.system], ids=["test-class", "os.system"])
def test_the_checkpoint_reader_refuses_other_globals(tmp_path, monkeypatch, payload):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f)
        pickle.dump({"model_state": payload}, f)
    with pytest.raises(pickle.UnpicklingError, match="is not allowed in a weights file"):
        voice.read_checkpoint(path)
    # through weights(), the same file is a VoiceError naming the file and the fix
    monkeypatch.setattr(voice, "weights_path", lambda: path)
    voice.weights.cache_clear()
    try:
        with pytest.raises(voice.VoiceError, match=r"evil\.pt: not a readable GE2E checkpoint.*requirements-weights"):
            voice.weights()
    finally:
        voice.weights.cache_clear()


def test_missing_weights_name_the_fix(monkeypatch):
    monkeypatch.setattr(voice.importlib.util, "find_spec", lambda name, *a: None)
    voice.weights.cache_clear()
    try:
        with pytest.raises(voice.VoiceError, match=r"not installed: pip install --no-deps --require-hashes "
                                                   r"-r requirements-weights\.txt"):
            voice.weights()
        with pytest.raises(voice.VoiceError, match="not installed"):
            voice.ge2e(np.zeros((1, SR), np.float32), np.array([SR]), sr=SR)
    finally:
        voice.weights.cache_clear()


def test_the_real_checkpoint_has_the_lstm_weights():
    _weights_or_skip()
    state = voice.read_checkpoint(voice.weights_path())
    for layer in range(3):
        assert state[f"lstm.weight_ih_l{layer}"].shape == (1024, 40 if layer == 0 else 256)
        assert state[f"lstm.weight_hh_l{layer}"].shape == (1024, 256)
        assert state[f"lstm.bias_ih_l{layer}"].shape == state[f"lstm.bias_hh_l{layer}"].shape == (1024,)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in state.values())
    assert 0.01 < np.abs(state["lstm.weight_ih_l0"]).mean() < 1  # real values, not zeros or garbage


def test_ge2e_is_deterministic_batch_independent_and_ignores_the_padding():
    _weights_or_skip()
    noise = (np.random.default_rng(1).normal(size=int(1.5 * SR)) * 0.05).astype(np.float32)
    Y, n_valid = np.stack([_tone(1.5), noise]), np.array([int(1.5 * SR)] * 2)
    out = voice.ge2e(Y, n_valid, sr=SR)
    assert out.shape == (2, 256) and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out[0] - out[1]).max() > 0.01      # a tone and noise are told apart
    np.testing.assert_array_equal(voice.ge2e(Y, n_valid, sr=SR), out)
    for i in range(2):
        np.testing.assert_allclose(voice.ge2e(Y[i:i + 1], n_valid[i:i + 1], sr=SR)[0], out[i], atol=1e-6)
    padded = np.concatenate([Y, np.ones((2, SR), np.float32)], axis=1)  # whatever follows n_valid
    np.testing.assert_allclose(voice.ge2e(padded, n_valid, sr=SR), out, atol=1e-6)
    zeros = np.concatenate([Y, np.zeros((2, SR), np.float32)], axis=1)
    np.testing.assert_allclose(voice.ge2e(zeros, n_valid, sr=SR), out, atol=1e-6)
    names = voice.names()
    assert len(names) == 256 and len(set(names)) == 256


def test_ge2e_varies_across_real_speech(sample_dir):
    _weights_or_skip()
    wav = sample_dir / "emodb" / "wav"                # 16 kHz; speakers 03 and 08
    paths = [p for speaker in ("03", "08") for p in sorted(wav.glob(f"{speaker}*.wav"))[:2]]
    if len(paths) < 4:
        pytest.skip(f"fewer than two clips of speakers 03 and 08 in {wav}")
    clips = [sf.read(p, dtype="float32")[0] for p in paths]
    n = max(map(len, clips))
    Y = np.stack([np.pad(y, (0, n - len(y))) for y in clips])
    out = voice.ge2e(Y, np.array([len(y) for y in clips]), sr=SR)
    assert out.shape == (4, 256) and np.isfinite(out).all()
    assert out.std(axis=0).max() > 0.01               # not a constant vector
    assert min(np.abs(out[i] - out[j]).max() for i in range(4) for j in range(i)) > 1e-3


@pytest.mark.parametrize("where", [0, 2, 4])   # a header pickle, the state, the storage-key list
def test_no_pickle_of_the_file_may_name_a_global(tmp_path, where):
    """Every one of the file's five pickles is read without looking up any global (a crafted
    header or key list cannot run code either)."""
    path, marker = tmp_path / "evil.pt", tmp_path / "ran"
    parts = [0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, {"model_state": {}}, []]
    parts[where] = _Payload(str(marker))
    with open(path, "wb") as f:
        for part in parts:
            pickle.dump(part, f)
    with pytest.raises(pickle.UnpicklingError, match="is not allowed in a weights file"):
        voice.read_checkpoint(path)
    assert not marker.exists()


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_weights_file_other_than_the_pinned_one_is_refused_before_unpickling(tmp_path, monkeypatch):
    (tmp_path / "resemblyzer").mkdir()
    (tmp_path / "resemblyzer" / "pretrained.pt").write_bytes(b"anything else")
    spec = type("Spec", (), {"submodule_search_locations": [str(tmp_path / "resemblyzer")]})()
    monkeypatch.setattr(voice.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(voice.VoiceError, match=r"pretrained\.pt: not the weights of Resemblyzer==0\.1\.4 \(sha256 differs\)"):
        voice.weights_path()


def test_ge2e_gives_the_pinned_values_of_the_real_weights():
    """Pins the features (not only their shape): a reader that ignored storage offsets, a dropped
    bias or another layer would change them."""
    _weights_or_skip()
    y = (0.1 * np.sin(2 * np.pi * 220 * np.arange(24000) / SR)).astype(np.float32)
    f = voice.ge2e(y[None], np.array([24000]), sr=SR)[0]
    np.testing.assert_allclose(f[:5], [-0.14973696, -0.15856098, 0.05845022, 0.37131509, -0.02226671], atol=2e-6)
    assert float(f.sum()) == pytest.approx(2.4682350, abs=1e-4)


# -- the frame feature ``ge2e`` (voice.frames, features.sequence) ---------------------------------

def test_frames_are_the_layer_outputs_of_the_clip_alone_zero_after_and_batch_independent():
    w = _weights_or_skip()
    noise = (np.random.default_rng(2).normal(size=SR) * 0.05).astype(np.float32)
    Y = np.zeros((3, 2 * SR), np.float32)
    Y[0], Y[1, :SR] = _tone(2.0), noise                     # clip 2 holds no audio
    n_valid = np.array([2 * SR, SR, 0])
    out = voice.frames(Y, n_valid, sr=SR, n_frames=201)
    assert out.shape == (3, 201, 256) and out.dtype == np.float32 and np.isfinite(out).all()
    for i, n in enumerate(n_valid[:2]):                   # the clip's real audio alone, in one pass
        y = Y[i, :n].astype(np.float64)
        y = y * (10 ** (voice.LEVEL_DBFS / 20) / np.sqrt(np.mean(y ** 2)))
        mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=400, hop_length=160, n_mels=40).T
        want = voice.lstm_outputs(mel[None, :201], w)[0]
        k = 1 + n // 160
        np.testing.assert_allclose(out[i, :k], want[:k], atol=1e-6)
        assert np.abs(out[i, :k]).max() > 0.05
    assert not out[1, 101:].any() and not out[2].any()     # zero in the padding and without audio
    for i in range(3):                                    # each clip's frames whatever its batch
        np.testing.assert_allclose(voice.frames(Y[i:i + 1], n_valid[i:i + 1], sr=SR, n_frames=201)[0], out[i], atol=1e-6)
    louder = voice.frames(Y * 4, n_valid, sr=SR, n_frames=201)   # the level is set: gain does not matter
    np.testing.assert_allclose(louder, out, atol=1e-5)
    assert voice.frames(Y, n_valid, sr=SR, n_frames=50).shape == (3, 50, 256)
    names = voice.frame_names()
    assert len(set(names)) == 256 and not set(names) & set(voice.names())


def test_the_sequence_feature_ge2e_fills_256_columns_beside_the_others_and_needs_10_ms_frames():
    from pipeline.extraction import FeatureConfig, extract, prepare
    from pipeline.params import ParamsError
    from fakes import PARAMS

    _weights_or_skip()
    features = {**PARAMS["features"], "sequence": ["logmel", "ge2e", "rms"]}
    config = FeatureConfig.from_params(features, sr=SR)
    names = config.sequence_names()
    assert names[config.n_mels:config.n_mels + 256] == voice.frame_names() and names[-1] == "rms"
    clips = [prepare(y, config=config) for y in (_tone(1.2), _tone(2.5, f0=210.0))]
    Y, n_valid = np.stack([c[0] for c in clips]), np.array([c[1] for c in clips])
    out = extract(Y, n_valid, config=config)
    plain = extract(Y, n_valid, config=FeatureConfig.from_params({**features, "sequence": ["logmel", "rms"]}, sr=SR))
    seq = out["sequence"]
    np.testing.assert_array_equal(seq[..., :config.n_mels], plain["sequence"][..., :config.n_mels])
    np.testing.assert_array_equal(seq[..., -1], plain["sequence"][..., -1])
    np.testing.assert_array_equal(seq[..., config.n_mels:-1], voice.frames(Y, n_valid, sr=SR, n_frames=config.n_frames))
    assert np.abs(seq[0, :out["n_frames"][0], config.n_mels:-1]).max() > 0.05
    with pytest.raises(ParamsError, match=r"features\.hop_length=200 .*'ge2e'.*set hop_length to 160"):
        FeatureConfig.from_params({**features, "hop_length": 200}, sr=SR)
    FeatureConfig.from_params({**features, "hop_length": 200, "sequence": ["logmel"]}, sr=SR)   # without it: fine
    with pytest.raises(ParamsError, match=r"base\.sample_rate=22050 is not a multiple of 100 Hz"):
        FeatureConfig.from_params({**features, "hop_length": 220}, sr=22050)


def test_a_cnn_bundle_on_ge2e_frames_predicts_a_file_as_trained_and_is_refused_without_the_weights(tmp_path):
    from fakes import LABELS, PARAMS, speech, without_weights
    from pipeline import bundle as B
    from pipeline.extraction import FeatureConfig, extract, prepare
    from pipeline.infer import InferenceError, Predictor
    from pipeline.train import fit

    _weights_or_skip()
    config = FeatureConfig.from_params({**PARAMS["features"], "sequence": ["ge2e", "rms"]}, sr=SR)
    clips = [prepare(speech(1.2 + 0.1 * i, emotion=LABELS[i % len(LABELS)], seed=i), config=config)
             for i in range(len(LABELS))]
    feats = extract(np.stack([c[0] for c in clips]), np.array([c[1] for c in clips]), config=config)
    x = feats["sequence"].astype(np.float16).astype(np.float32)
    mean, std = B.fit_stats(x, feats["n_frames"])
    train = {**PARAMS["train"], "epochs": 1, "batch_size": 8, "learning_rate": 0.01, "class_weight": "none", "threads": 2}
    tiny = {**PARAMS["models"]["cnn"], "filters": [8], "dense": [8]}
    model, _ = fit(model_name="cnn", model_params=tiny, train_cfg=train, seed=0, labels=LABELS, x_val=None, y_val=None,
                   x_train=B.standardise(x, feats["n_frames"], mean=mean, std=std), y_train=np.arange(len(x)))
    B.save(tmp_path / "b", model=model, labels=LABELS, input_kind="sequence", feature_config=config.to_dict(),
           speaker_norm=False, mean=mean, std=std, info={"model": "cnn", "train_speakers": ["s:1"], "feature_dtype": "float16"})
    path = tmp_path / "clip.wav"
    y = speech(2.0, emotion="sad", seed=9)
    sf.write(path, y, SR, subtype="FLOAT")
    predictor = Predictor(tmp_path / "b")
    got = predictor.probabilities([predictor.load(path)])
    y_fixed, n_valid = prepare(y, config=config)
    want = extract(y_fixed[None], np.array([n_valid]), config=config)
    b = B.load(tmp_path / "b")
    np.testing.assert_allclose(got, b.predict_proba(want["sequence"].astype(np.float16).astype(np.float32),
                                                    want["n_frames"]), atol=1e-6)
    with without_weights(), pytest.raises(InferenceError, match=r"not installed: pip install --no-deps --require-hashes"):
        Predictor(tmp_path / "b")
