"""Pretrained voice-encoder features (``ge2e``): one vector per clip from a network trained on
other speech, for another task (telling speakers apart).

The voice encoder is a GE2E speaker encoder (Wan et al. 2018, "Generalized end-to-end loss for
speaker verification": 3 LSTM layers of 256 over 40 mel bands, 25 ms windows every 10 ms),
pretrained for speaker verification; its weights are Resemblyzer's (``resemblyzer/pretrained.pt``
in the ``Resemblyzer`` wheel, Apache-2.0), read here with numpy alone: the wheel is installed
without its dependencies (no PyTorch; ``requirements-weights.txt``). It was not trained on emotion
labels, and its project names none of the emotion corpora among its training data.

What the pipeline takes is not the speaker embedding (the encoder's output, trained to ignore how
a voice is used) but the mean over time of its **second LSTM layer's outputs** (256 values): on the
real development folds an RBF SVM over it scored well above one over the embedding or over the
first or third layer's mean (README, the lever table: the middle layer of a pretrained speech
network carries the most paralinguistic information, as reported for larger models too).
Like the eGeMAPS functionals it reads the clip the frame features see
(:func:`pipeline.extraction.prepare`, without the zero padding), sets it to -30 dBFS RMS (the
level Resemblyzer raises quiet clips to; it leaves louder ones, and every clip here is set to it,
as measured) and cuts into partial utterances of 160 frames (1.6 s) as
Resemblyzer does (a new one every 77 frames, the last kept if it covers 75 % of its frames; at
least one); the layer's outputs are averaged over every frame of every partial. Computed in
float64 and stored as float32, so the same clip gives the same vector on any CPU (BLAS kernels
differ in the last float64 bits only).

The same layer's outputs frame by frame are the frame feature ``ge2e`` (``features.sequence``,
:func:`frames`): the clip's real audio run through the layers in one pass, one 256-value row per
10 ms frame, the input of the deep models in place of (or beside) the log-mel frames.

Pure functions, arrays in and arrays out; the weights are read once per process.

>>> import numpy as np
>>> y = np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32) * 0.1
>>> ge2e(y[None], np.array([16000]), sr=16000).shape  # doctest: +SKIP
(1, 256)
"""
from __future__ import annotations

import collections
import functools
import hashlib
import importlib.util
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.fft

SR = 16000               # the encoder's sample rate
N_MELS = 40
N_FFT = 400              # 25 ms
HOP = 160                # 10 ms
PARTIAL = 160            # frames per partial utterance (1.6 s)
PARTIAL_STEP = 77        # frames between partial starts (Resemblyzer's rate of 1.3 partials per second)
MIN_COVERAGE = 0.75      # a last partial is kept if real audio fills this share of it
LEVEL_DBFS = -30.0       # RMS level every clip is set to (Resemblyzer's preprocessing raises quiet clips to it)
LAYER = 1                # which LSTM layer's outputs (0-based): the second of three
HIDDEN = 256
BATCH = 32               # clips whose partials run through the LSTM together (about 130 MB of float64 a batch)
WHEEL = "Resemblyzer==0.1.4"
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
"""sha256 of that wheel's ``resemblyzer/pretrained.pt`` (as in its RECORD): any other file is refused
before it is unpickled, so features always come from these weights."""
INSTALL = ("pip install --no-deps --require-hashes -r requirements-weights.txt "
           f"(the {WHEEL} wheel, for its weights file only)")


class VoiceError(RuntimeError):
    """The encoder's weights are missing or unreadable; the message names the file and the fix."""


def names() -> list[str]:
    """The column names of :func:`ge2e`, in order (256)."""
    return [f"ge2e_lstm{LAYER + 1}_mean_{i:03d}" for i in range(HIDDEN)]


def frame_names() -> list[str]:
    """The column names of :func:`frames`, in order (256)."""
    return [f"ge2e_lstm{LAYER + 1}_{i:03d}" for i in range(HIDDEN)]


def weights_path() -> Path:
    """``pretrained.pt`` of the installed Resemblyzer wheel (found without importing it: its
    ``__init__`` imports torch)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise VoiceError(f"the GE2E voice encoder's weights are not installed: {INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.is_file():
        raise VoiceError(f"{path}: missing from the Resemblyzer package; reinstall it: {INSTALL}")
    if hashlib.sha256(path.read_bytes()).hexdigest() != WEIGHTS_SHA256:
        raise VoiceError(f"{path}: not the weights of {WHEEL} (sha256 differs); reinstall it: {INSTALL}")
    return path


_STORAGE_DTYPES = {"FloatStorage": np.float32}


class _Storage:
    def __init__(self, dtype: type) -> None:
        self.dtype, self.data = dtype, None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        base = self.storage.data
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if base is None or self.offset < 0 or min(self.stride, default=1) < 0 or last >= len(base):
            raise ValueError(f"a tensor of shape {self.size} lies outside its storage")
        return np.lib.stride_tricks.as_strided(base[self.offset:], self.size,
                                               [s * base.itemsize for s in self.stride]).copy()


class _Plain(pickle.Unpickler):
    """Plain data only (numbers, strings, lists, dicts): no global is ever looked up."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")


class _Unpickler(pickle.Unpickler):
    """PyTorch's legacy (pre-zip) checkpoint format, with nothing but tensors and dicts allowed."""

    def __init__(self, f) -> None:
        super().__init__(f)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, stride, *_: _Tensor(storage, offset, size, stride)
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid):
        kind, storage_type, key = pid[:3]
        if kind != "storage" or storage_type not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid[:2]!r}")
        return self.storages.setdefault(key, _Storage(_STORAGE_DTYPES[storage_type]))


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The ``model_state`` of a legacy PyTorch checkpoint as float32 arrays, without torch."""
    with open(path, "rb") as f:
        for _ in range(3):                          # magic number, protocol version, system info
            _Plain(f).load()
        unpickler = _Unpickler(f)
        state = unpickler.load()["model_state"]
        for key in _Plain(f).load():                # the storages' raw data, in this order
            storage = unpickler.storages[key]
            n = struct.unpack("<q", f.read(8))[0]
            size = n * np.dtype(storage.dtype).itemsize
            data = f.read(size)
            if len(data) != size:
                raise ValueError(f"storage {key} is truncated ({len(data)} of {size} bytes)")
            storage.data = np.frombuffer(data, storage.dtype)
    return {name: tensor.array() for name, tensor in state.items()}


@functools.lru_cache(maxsize=1)
def weights() -> dict[str, np.ndarray]:
    """The encoder's LSTM weights up to :data:`LAYER`, float64 (read once per process)."""
    path = weights_path()
    try:
        state = read_checkpoint(path)
        out = {}
        for layer in range(LAYER + 1):
            w_ih, w_hh = state[f"lstm.weight_ih_l{layer}"], state[f"lstm.weight_hh_l{layer}"]
            inputs = N_MELS if layer == 0 else HIDDEN
            if w_ih.shape != (4 * HIDDEN, inputs) or w_hh.shape != (4 * HIDDEN, HIDDEN):
                raise ValueError(f"layer {layer} has shapes {w_ih.shape}, {w_hh.shape}")
            out[f"w_ih{layer}"] = w_ih.T.astype(np.float64)
            out[f"w_hh{layer}"] = w_hh.T.astype(np.float64)
            out[f"b{layer}"] = (state[f"lstm.bias_ih_l{layer}"] + state[f"lstm.bias_hh_l{layer}"]).astype(np.float64)
    except (OSError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError, struct.error) as err:
        raise VoiceError(f"{path}: not a readable GE2E checkpoint ({err}); reinstall it: {INSTALL}") from None
    return out


def partials(n_samples: int) -> list[int]:
    """Start frames of the partial utterances covering ``n_samples`` (Resemblyzer's rule)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL + PARTIAL_STEP + 1), PARTIAL_STEP))
    if len(starts) > 1 and (n_samples - starts[-1] * HOP) / (PARTIAL * HOP) < MIN_COVERAGE:
        starts = starts[:-1]
    return starts


def _leveled(y: np.ndarray) -> np.ndarray:
    """One clip at 16 kHz in float64, brought to -30 dBFS RMS (a silent clip is left as is)."""
    y = np.asarray(y, dtype=np.float64)
    rms = float(np.sqrt(np.mean(y ** 2))) if len(y) else 0.0
    return y * (10 ** (LEVEL_DBFS / 20) / rms) if rms > 0 else y


def melspectrogram(y: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power spectra of a clip at 16 kHz (not log: the encoder's input): the
    bytes of ``librosa.feature.melspectrogram(y=y, sr=16000, n_fft=400, hop_length=160,
    n_mels=40).T`` (centred frames, zero padding, periodic Hann window), with the operations it
    performs in its order and memory layout, to the bit (``tests/test_voice.py``). Why not
    librosa's: the first call in a process imports librosa's spectral module, scipy.signal and
    numba's caches, about 3 s of every stage or ``ser`` process reading the frame feature ``ge2e``
    (the default model's input)."""
    from pipeline.extraction.banks import hann, mel_bank32   # banks imports extraction.config, which imports this module

    y = np.asarray(y, dtype=np.float64)
    padded = np.pad(y, N_FFT // 2)
    n_frames = 1 + len(y) // HOP
    frames = np.lib.stride_tricks.as_strided(padded, shape=(N_FFT, n_frames), strides=(padded.itemsize, HOP * padded.itemsize),
                                             writeable=False)      # (samples, frames), as librosa.util.frame
    power = np.asfortranarray(np.abs(scipy.fft.rfft(hann(N_FFT)[:, None] * frames, axis=-2)) ** 2.0)
    return np.einsum("...ft,mf->...mt", power, mel_bank32(SR, N_FFT, N_MELS), optimize=True).T


def mel_partials(y: np.ndarray) -> np.ndarray:
    """(n_partials, 160, 40) mel power spectra of one clip at 16 kHz, brought to -30 dBFS RMS and
    zero-padded to its last partial's end."""
    y = _leveled(y)
    starts = partials(len(y))
    need = (starts[-1] + PARTIAL) * HOP
    mel = melspectrogram(np.pad(y, (0, max(0, need - len(y)))))
    return np.stack([mel[s:s + PARTIAL] for s in starts])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def lstm_outputs(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """Outputs (batch, time, 256) of LSTM layer :data:`LAYER` for inputs (batch, time, 40).
    PyTorch's gate order (input, forget, cell, output), zero initial state."""
    h_in = np.asarray(x, dtype=np.float64)
    for layer in range(LAYER + 1):
        z_in = h_in @ w[f"w_ih{layer}"] + w[f"b{layer}"]
        h = np.zeros((len(x), HIDDEN))
        c = np.zeros((len(x), HIDDEN))
        seq = np.empty((len(x), x.shape[1], HIDDEN))
        for t in range(x.shape[1]):
            i, f, g, o = np.split(z_in[:, t] + h @ w[f"w_hh{layer}"], 4, axis=1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            seq[:, t] = h
        h_in = seq
    return h_in


def _real_audio(Y: np.ndarray, n_valid: np.ndarray, *, sr: int, at_least: int) -> list[np.ndarray]:
    """Each clip's first ``max(n_valid, at_least)`` samples, at 16 kHz."""
    from pipeline.audio import resample

    Y = np.asarray(Y, dtype=np.float32)
    n_valid = np.asarray(n_valid).reshape(-1)
    if Y.ndim != 2 or len(n_valid) != len(Y):
        raise ValueError(f"expected clips (batch, n_samples) and one n_valid per clip, got {Y.shape} and {n_valid.shape}")
    clips = [y[:max(int(n), at_least)] for y, n in zip(Y, n_valid, strict=True)]
    if sr != SR:
        clips = [resample(y, orig_sr=sr, target_sr=SR) if len(y) else y for y in clips]
    return clips


def ge2e(Y: np.ndarray, n_valid: np.ndarray, *, sr: int) -> np.ndarray:
    """The voice encoder's features of each clip's real audio.

    Parameters
    ----------
    Y : np.ndarray [shape=(batch, n_samples)]
        Mono clips at ``sr`` Hz (as from :func:`pipeline.extraction.prepare`).
    n_valid : array-like of int [shape=(batch,)]
        Samples of real audio at the start of each clip (the zero padding after them is left out).
    sr : int
        Sample rate, Hz (resampled to 16 kHz if it differs).

    Returns
    -------
    np.ndarray [shape=(batch, 256), dtype=float32]
        The mean over every frame of every partial utterance of the second LSTM layer's outputs.
    """
    w = weights()
    clips = _real_audio(Y, n_valid, sr=sr, at_least=1)
    rows = []
    for start in range(0, len(clips), BATCH):            # the partials of BATCH clips at once (bounded memory)
        mels = [mel_partials(y) for y in clips[start:start + BATCH]]
        out = lstm_outputs(np.concatenate(mels), w)
        bounds = np.cumsum([0] + [len(m) for m in mels])
        rows += [out[a:b].mean(axis=(0, 1)) for a, b in zip(bounds[:-1], bounds[1:])]
    return np.stack(rows).astype(np.float32)


def frames(Y: np.ndarray, n_valid: np.ndarray, *, sr: int, n_frames: int) -> np.ndarray:
    """The encoder's layer outputs frame by frame (the sequence feature ``ge2e``).

    Each clip's real audio is brought to -30 dBFS RMS and run through the LSTM layers in one pass
    (no partial utterances: frame ``t`` sees the clip's frames up to ``t``), on the encoder's 10 ms
    frames (25 ms windows, ``center=True``): with a 10 ms hop the frames are the frame cache's.

    Parameters
    ----------
    Y : np.ndarray [shape=(batch, n_samples)]
        Mono clips at ``sr`` Hz (as from :func:`pipeline.extraction.prepare`).
    n_valid : array-like of int [shape=(batch,)]
        Samples of real audio at the start of each clip.
    sr : int
        Sample rate, Hz (resampled to 16 kHz if it differs).
    n_frames : int
        Frames per clip in the output.

    Returns
    -------
    np.ndarray [shape=(batch, n_frames, 256), dtype=float32]
        Layer :data:`LAYER`'s outputs for the clip's first ``1 + n_valid // 160`` frames (at 16 kHz),
        zero after them (the padding) and for a clip without audio. Computed in float64.
    """
    w = weights()
    clips = _real_audio(Y, n_valid, sr=sr, at_least=0)
    out = np.zeros((len(clips), n_frames, HIDDEN), dtype=np.float32)
    for start in range(0, len(clips), BATCH):            # BATCH clips at once, zero-padded at the end
        mels = [melspectrogram(_leveled(y))[:n_frames] if len(y) else np.zeros((0, N_MELS)) for y in clips[start:start + BATCH]]
        longest = max(len(m) for m in mels)
        if longest == 0:
            continue
        x = np.zeros((len(mels), longest, N_MELS))
        for i, m in enumerate(mels):
            x[i, :len(m)] = m
        h = lstm_outputs(x, w)                           # causal: the padding after a clip never reaches its frames
        for i, m in enumerate(mels):
            out[start + i, :len(m)] = h[i, :len(m)]
    return out
