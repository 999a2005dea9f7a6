"""The extraction itself: one STFT per clip, and every frame and utterance feature from it
(:func:`extract`). See the package docstring for the definitions."""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

import numpy as np
import scipy.fft

from pipeline import voice
from pipeline.extraction.banks import ROLL_BLOCK, Kernels, kernels, project
from pipeline.extraction.config import DELTA_WIDTH, FeatureConfig, n_valid_frames

LOG_FLOOR = 1e-10          # power floor before log10: -100 dB
ROLL_PERCENT = 0.85
ZC_THRESHOLD = 1e-10       # |y| at or below this counts as 0, as in librosa.zero_crossings
_BLOCK_CLIPS = 16          # clips per internal block: bounds memory, keeps arrays cache-sized
_TINY = np.finfo(np.float32).tiny
# pitch (sequence feature "pitch"): normalised autocorrelation, as Praat's "To Pitch (ac)"
PITCH_WINDOW_S = 0.040     # analysis window: 3 periods of the lowest pitch
PITCH_MIN_HZ = 75.0
PITCH_MAX_HZ = 600.0
PITCH_VOICING = 0.45       # a frame is voiced when its best normalised autocorrelation exceeds this
PITCH_OCTAVE_COST = 0.03   # per octave below PITCH_MAX_HZ, subtracted from a candidate's strength
PITCH_SILENCE_DB = 40.0    # frames this far below the clip's loudest frame are unvoiced
SEMITONE_REF_HZ = 27.5     # f0 in semitones above 27.5 Hz (A0), as eGeMAPS's F0semitoneFrom27.5Hz




def _mfcc(logmel: np.ndarray, n_mfcc: int) -> np.ndarray:
    """DCT-II (ortho) of log-mel frames, first ``n_mfcc`` coefficients (``librosa.feature.mfcc``),
    computed in float32.

    pocketfft, not a matrix product: a product with a DCT matrix sums in the BLAS kernel's
    order, and for flat spectra (silence, padding) the coefficients are pure cancellation,
    so another CPU would give other values (even other signs) there."""
    return scipy.fft.dct(logmel.astype(np.float32), type=2, norm="ortho", axis=-1)[..., :n_mfcc]


def extract(Y: np.ndarray, n_valid: np.ndarray, *, config: FeatureConfig) -> dict[str, np.ndarray]:
    """Sequence features and utterance vectors for a batch of fixed-length clips.

    Parameters
    ----------
    Y : np.ndarray [shape=(batch, config.n_samples)]
        Mono clips at ``config.sr`` Hz, loudness-normalised and fixed in length (:func:`prepare`).
    n_valid : array-like of int [shape=(batch,)]
        Samples of real audio at the start of each clip (the rest is zero padding).
    config : FeatureConfig

    Returns
    -------
    dict
        ``"sequence"``: float32 (batch, config.n_frames, len(config.sequence_names()));
        ``"utterance"``: float32 (batch, len(config.utterance_names())), averaged over the
        first ``n_frames`` frames only; ``"n_frames"``: int32 (batch,), frames that hold real
        audio. Every value is finite, also for silent or all-padding clips.

    Notes
    -----
    Clips are processed in blocks of 16, so memory is bounded whatever the batch size.
    BLAS runs on one thread while ``extract`` runs (restored afterwards). The ``features``
    stage also keeps glibc's freed memory for reuse (:func:`pipeline.stage.keep_freed_memory`,
    set by its entry point, not here: it is process-wide). A clip's features are bit-identical whatever
    the batch it is in (every matrix product is per clip; see :func:`pipeline.extraction.banks.project`).

    Same bits on any CPU: OpenBLAS and NumPy pick kernels at run time by CPU (AVX2, AVX-512,
    ...), and kernels sum in different orders, so float32 products would differ in the last
    bits from one machine to another. Every product, mean and logarithm here is computed in
    float64 and rounded to float32 only at the end (the FFT and the MFCC DCT are pocketfft's,
    in float32: pocketfft has no run-time dispatch): the kernels' float64 differences (about
    1e-16 relative) are far below float32's and float16's rounding steps, so the stored
    features are identical across
    OpenBLAS core types and NumPy CPU features (``tests/test_portable.py``).
    """
    Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim != 2 or Y.shape[1] != config.n_samples:
        raise ValueError(f"expected clips of shape (batch, {config.n_samples}) "
                         f"({config.seconds} s at {config.sr} Hz), got {Y.shape}; use prepare() first")
    n_valid = np.asarray(n_valid).reshape(-1)
    if len(n_valid) != len(Y) or np.any(n_valid < 0) or np.any(n_valid > config.n_samples):
        raise ValueError(f"n_valid must hold {len(Y)} sample counts in [0, {config.n_samples}], got {n_valid!r}")
    n_frames = np.minimum(n_valid_frames(n_valid, config=config), config.n_frames).astype(np.int32)
    if not np.all(np.isfinite(Y)):
        raise ValueError("clips contain NaN or inf samples; check the decoder output")
    sequence = np.empty((len(Y), config.n_frames, len(config.sequence_names())), dtype=np.float32)
    utterance = np.empty((len(Y), len(config.utterance_names())), dtype=np.float32)
    with _one_blas_thread():
        for start in range(0, len(Y), _BLOCK_CLIPS):
            stop = start + _BLOCK_CLIPS
            _extract_block(Y[start:stop], n_frames[start:stop], n_valid[start:stop], config=config,
                           sequence=sequence[start:stop], utterance=utterance[start:stop])
    return {"sequence": sequence, "utterance": utterance, "n_frames": n_frames}


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional: without it BLAS keeps its own thread count
        return None
    return ThreadpoolController()


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """Run the (small) matrix products on one BLAS thread: extra OpenBLAS threads spin and
    cost more CPU than they save here; parallelism comes from worker processes instead.
    The limit is process-wide while :func:`extract` runs and restored afterwards."""
    controller = _blas_controller()
    return controller.limit(limits=1, user_api="blas") if controller else contextlib.nullcontext()


def power_spectrogram(Y: np.ndarray, *, config: FeatureConfig) -> np.ndarray:
    """``|STFT|**2`` of a batch, as ``librosa.stft(center=True, pad_mode="constant")``.

    Parameters
    ----------
    Y : np.ndarray [shape=(batch, n_samples)], float32

    Returns
    -------
    S : np.ndarray [shape=(batch, n_frames, 1 + n_fft // 2)], float32
        Note the time-major layout (librosa's is (..., freq, time)). pocketfft has no run-time
        CPU dispatch and element-wise float32 arithmetic is correctly rounded under any SIMD
        width, so ``S`` is the same on every CPU.
    """
    k = kernels(config)
    half, n = config.n_fft // 2, Y.shape[1]
    padded = np.zeros((len(Y), n + 2 * half), dtype=np.float32)
    padded[:, half:half + n] = Y
    n_frames = 1 + (n + 2 * half - config.n_fft) // config.hop_length
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft, axis=1)
    X = scipy.fft.rfft(frames[:, ::config.hop_length][:, :n_frames] * k.window, axis=-1, overwrite_x=True)
    S = X.real**2
    S += X.imag**2
    return S


def _extract_block(Y: np.ndarray, n_frames: np.ndarray, n_valid: np.ndarray, *, config: FeatureConfig,
                   sequence: np.ndarray, utterance: np.ndarray) -> None:
    """Fill ``sequence`` and ``utterance`` (views into the outputs) for one block of clips."""
    k, u = kernels(config), config.utterance
    power = power_spectrogram(Y, config=config)                   # (B, T, F) float32
    B, T, F = power.shape
    S = np.empty((B, T, k.moments.shape[0]))                      # float64 (products), F padded to whole
    S[..., :F] = power                                            # roll-off blocks with zeros
    S[..., F:] = 0.0
    del power
    bands = project(S, kernels=k)                                # mel (seq), mel (utt), chroma
    mel = bands[..., :config.n_mels]
    mel_u = bands[..., config.n_mels:config.n_mels + u.n_mels]
    chroma = bands[..., config.n_mels + u.n_mels:]
    zcr, rms = _zcr_rms(Y, config=config)                          # (B, T) each

    # sequence features, written straight into the output columns
    logmel = _log_power(mel) if {"logmel", "mfcc"} & set(config.sequence) else None
    col = 0
    for feat in config.sequence:
        if feat == "logmel":
            sequence[..., col:col + config.n_mels] = logmel
            col += config.n_mels
        elif feat == "mfcc":
            mfcc = _mfcc(logmel, config.n_mfcc)
            sequence[..., col:col + config.n_mfcc] = mfcc
            col += config.n_mfcc
            if config.mfcc_deltas:
                sequence[..., col:col + config.n_mfcc] = scipy.signal.savgol_filter(
                    mfcc, DELTA_WIDTH, polyorder=1, deriv=1, axis=1, mode="interp")
                col += config.n_mfcc
        elif feat == "pitch":
            sequence[..., col:col + 2] = pitch(Y, sr=config.sr, hop_length=config.hop_length)
            col += 2
        elif feat == "ge2e":
            sequence[..., col:col + voice.HIDDEN] = voice.frames(Y, n_valid, sr=config.sr, n_frames=T)
            col += voice.HIDDEN
        else:
            sequence[..., col] = zcr if feat == "zcr" else rms
            col += 1

    # utterance vector: statistics over the frames that hold real audio
    mask = (np.arange(T) < n_frames[:, None]).astype(np.float64)  # (B, T)
    count = np.maximum(n_frames, 1).astype(np.float64)[:, None]

    def mean(x: np.ndarray) -> np.ndarray:                        # (B, T, K) -> (B, K)
        return (mask[:, None, :] @ x)[:, 0, :] / count

    mfcc_u = _mfcc(_log_power(mel_u), u.n_mfcc)
    mfcc_mean = mean(mfcc_u)
    peak = chroma.max(axis=-1, keepdims=True)                    # chroma_stft: each frame's max -> 1
    chroma = chroma / np.where(peak < _TINY, 1.0, peak)
    centroid, bandwidth, rolloff = _spectral_shape(S, kernels=k)
    scalars = np.stack([x.reshape(B, T) for x in (centroid, rolloff, bandwidth)] + [zcr, rms], axis=-1)
    parts = [mfcc_mean]
    if u.std:
        dev = (mfcc_u - mfcc_mean[:, None, :]) * mask[..., None]
        parts.append(np.sqrt((dev * dev).sum(axis=1) / count))
    parts += [mean(chroma), mean(mel_u), mean(scalars)]
    utterance[:] = np.concatenate(parts, axis=1)


@functools.lru_cache(maxsize=4)
def _pitch_setup(sr: int) -> tuple[int, int, int, int, np.ndarray, np.ndarray, np.ndarray]:
    """(window length, FFT length, shortest lag, longest lag, periodic Hann window (float32),
    the window's normalised autocorrelation at lags 0..longest + 1, each candidate lag's octave
    cost) for :func:`pitch` at ``sr``. Built with pocketfft and ``math``, never BLAS or NumPy's
    SIMD transcendental functions, so the same bits on any CPU."""
    n_win = int(round(PITCH_WINDOW_S * sr))
    lag_lo, lag_hi = int(math.ceil(sr / PITCH_MAX_HZ)), int(math.floor(sr / PITCH_MIN_HZ))
    n_fft = scipy.fft.next_fast_len(n_win + lag_hi + 2, real=True)   # no circular wrap up to lag_hi + 1
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_win) / n_win)).astype(np.float32)
    spec = scipy.fft.rfft(window, n=n_fft)
    r_w = scipy.fft.irfft(spec.real**2 + spec.imag**2, n=n_fft)[:lag_hi + 2].astype(np.float64)
    cost = np.array([PITCH_OCTAVE_COST * math.log2(lag * PITCH_MAX_HZ / sr) for lag in range(lag_lo, lag_hi + 1)])
    return n_win, n_fft, lag_lo, lag_hi, window, r_w / r_w[0], cost


def pitch(Y: np.ndarray, *, sr: int, hop_length: int) -> np.ndarray:
    """Per-frame fundamental frequency and voicing of a batch of clips (sequence feature ``pitch``).

    Praat-style (Boersma 1993, the normalisation of Praat's "To Pitch (ac)", without its path
    finder across frames): frame ``t`` is centred on sample ``t * hop_length`` (zero padding, as
    the STFT frames), with a 40 ms periodic Hann window and its mean removed. Its autocorrelation,
    divided by its value at lag 0 and by the window's own autocorrelation, is searched among its
    local maxima at the lags of 75-600 Hz for the strongest (less a cost of 0.03 per octave
    below 600 Hz, against octave errors), refined by a parabola through it and its neighbours.

    Returns
    -------
    np.ndarray [shape=(batch, n_frames, 2)], float64
        Column 0: f0 in semitones above 27.5 Hz (``12 * log2(f0 / 27.5)``, as eGeMAPS's
        ``F0semitoneFrom27.5Hz``) in voiced frames and 0 in the others; column 1: voicing, the
        peak's normalised autocorrelation clipped to [0, 1] (0 in all-zero frames and frames with
        no local maximum in the range). A frame is voiced when its voicing exceeds 0.45 and its
        energy is within 40 dB of the clip's loudest frame. A clip's values do not depend on the
        other clips of its batch.
    """
    Y = np.asarray(Y, dtype=np.float32)
    n_win, n_fft, lag_lo, lag_hi, window, r_w, cost = _pitch_setup(int(sr))
    B, n = Y.shape
    half = n_win // 2
    T = 1 + n // hop_length
    padded = np.zeros((B, max((T - 1) * hop_length + n_win, half + n)), dtype=np.float32)
    padded[:, half:half + n] = Y
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_win, axis=1)[:, ::hop_length][:, :T]
    frames = frames - frames.mean(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)
    spec = scipy.fft.rfft(frames * window, n=n_fft, axis=-1)
    power = spec.real**2
    power += spec.imag**2
    r = scipy.fft.irfft(power, n=n_fft, axis=-1)[..., :lag_hi + 2].astype(np.float64)
    energy = r[..., 0]
    norm = r / np.where(energy > 0, energy, 1.0)[..., None]
    norm /= r_w
    inner = norm[..., lag_lo:lag_hi + 1]
    peak_here = (inner > norm[..., lag_lo - 1:lag_hi]) & (inner >= norm[..., lag_lo + 1:lag_hi + 2])
    strength = np.where(peak_here, inner - cost, -np.inf)
    best = lag_lo + np.argmax(strength, axis=-1)                  # (B, T)
    found = peak_here.any(axis=-1) & (energy > 0)
    at = lambda k: np.take_along_axis(norm, k[..., None], axis=-1)[..., 0]
    left, mid, right = at(best - 1), at(best), at(best + 1)
    curve = left - 2 * mid + right
    shift = np.where(curve < 0, 0.5 * (left - right) / np.where(curve < 0, curve, -1.0), 0.0)
    shift = np.clip(shift, -0.5, 0.5)
    voicing = np.where(found, np.clip(mid - 0.25 * (left - right) * shift, 0.0, 1.0), 0.0)
    loud = energy > np.max(energy, axis=1, keepdims=True) * 10.0 ** (-PITCH_SILENCE_DB / 10.0)
    voiced = loud & (voicing > PITCH_VOICING)
    out = np.zeros((B, T, 2))
    out[..., 0][voiced] = 12.0 * np.log2(sr / (best[voiced] + shift[voiced]) / SEMITONE_REF_HZ)
    out[..., 1] = voicing
    return out


def _spectral_shape(S: np.ndarray, *, kernels: Kernels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectral centroid, bandwidth (p=2) and roll-off (0.85) in Hz of each frame of ``S``
    (power, float64, shape (B, T, F) zero-padded to ``kernels.moments.shape[0]`` bins), from
    the magnitude ``sqrt(S)`` as ``librosa.feature.spectral_*``; three (B * T,) arrays.

    One skinny matmul gives, per frame, the magnitude sum, first and second frequency
    moments and the sums over blocks of ``ROLL_BLOCK`` bins; roll-off then only runs a
    cumulative sum inside the one block where the 85 % point falls.
    """
    B, T, _ = S.shape
    n, F = B * T, len(kernels.freqs)
    mag = np.sqrt(S)
    sums = (mag @ kernels.moments).reshape(n, -1)                 # per clip (see banks.project): (n, 3 + n_blocks)
    m0, m1, m2, blocks = sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3:]
    ok = m0 >= _TINY                                              # librosa leaves all-zero frames at 0
    safe = np.where(ok, m0, 1.0)
    centroid = np.where(ok, m1 / safe, 0.0)
    bandwidth = np.where(ok, np.sqrt(np.maximum(m2 / safe - centroid**2, 0.0)), 0.0)
    # roll-off: first bin where the running sum reaches ROLL_PERCENT of the total
    running = np.cumsum(blocks, axis=1)
    threshold = ROLL_PERCENT * running[:, -1:]
    block = np.minimum((running < threshold).sum(axis=1), blocks.shape[1] - 1)
    before = np.where(block > 0, np.take_along_axis(running, np.maximum(block - 1, 0)[:, None], axis=1)[:, 0], 0.0)
    inside = np.take_along_axis(mag.reshape(n, -1, ROLL_BLOCK), block[:, None, None], axis=1)[:, 0, :]
    within = ((before[:, None] + np.cumsum(inside, axis=1)) < threshold).sum(axis=1)
    rolloff = kernels.freqs[np.minimum(block * ROLL_BLOCK + within, F - 1)]
    return centroid, bandwidth, rolloff


def _log_power(x: np.ndarray) -> np.ndarray:
    """``10 * log10(max(x, 1e-10))``: absolute dB, floor exactly -100 dB (float64 in, float64 out)."""
    out = np.log10(np.maximum(x, LOG_FLOOR))
    out *= 10.0
    return np.maximum(out, 10.0 * np.log10(LOG_FLOOR), out=out)


def _zcr_rms(Y: np.ndarray, *, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame zero-crossing rate and RMS over ``n_fft``-sample frames centred on
    ``t * hop_length``, from running sums (no framing).

    Equal to ``librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop_length)``
    (edge padding) and ``librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop_length)``
    (zero padding). Returns two float64 arrays of shape (batch, n_frames).
    """
    B, n = Y.shape
    half = config.n_fft // 2
    T = 1 + (n + 2 * half - config.n_fft) // config.hop_length
    lo = np.arange(T) * config.hop_length - half                 # first sample of each frame
    hi = lo + config.n_fft                                       # one past its last sample
    # Frame edges fall on multiples of g, so running sums over g-sample blocks are enough.
    g = math.gcd(config.hop_length, half, config.n_fft)
    nb = -(-n // g)
    negative = Y < -ZC_THRESHOLD                                 # |y| <= threshold counts as 0 (positive)
    crossed = np.zeros((B, nb * g), dtype=bool)                  # crossed[:, j]: sign of y[j-1] != y[j]
    np.not_equal(negative[:, 1:], negative[:, :-1], out=crossed[:, 1:n])
    squares = np.zeros((B, nb * g), dtype=np.float32)
    np.square(Y, out=squares[:, :n])
    zc_run = np.zeros((B, nb + 1), dtype=np.int32)
    np.cumsum(crossed.reshape(B, nb, g).sum(axis=-1, dtype=np.int32), axis=1, out=zc_run[:, 1:])
    energy_run = np.zeros((B, nb + 1), dtype=np.float64)
    np.cumsum(squares.reshape(B, nb, g).sum(axis=-1, dtype=np.float64), axis=1, out=energy_run[:, 1:])
    a, b = np.clip(lo, 0, nb * g) // g, np.clip(hi, 0, nb * g) // g
    # pairs inside a frame are (j-1, j) for lo < j < hi: drop the pair that straddles its first sample
    first = np.where((lo >= 0) & (lo < n), crossed[:, np.clip(lo, 0, n - 1)], False)
    zc = zc_run[:, b] - zc_run[:, a] - first
    power = (energy_run[:, b] - energy_run[:, a]) / config.n_fft
    return zc / config.n_fft, np.sqrt(np.maximum(power, 0.0))
