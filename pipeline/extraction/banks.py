"""Filter banks and per-setting constants of the extraction, built once per :class:`FeatureConfig`
(:func:`kernels`), and the one banded product that applies them (:func:`project`)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from pipeline.extraction.config import FeatureConfig

ROLL_BLOCK = 16            # frequency bins per block in the two-level roll-off search


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (``librosa.hz_to_mel(htk=False)``): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    linear = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), linear)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), (200.0 / 3) * m)


@functools.lru_cache(maxsize=16)
def mel_bank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney mel filter bank, shape (n_mels, 1 + n_fft // 2), float64: ``librosa.filters.mel``
    with its defaults (fmin 0, fmax sr/2, Slaney scale and area normalisation), ported to
    NumPy (equal to librosa's within 1e-16, ``tests/test_extraction.py``).

    Why a port: the first ``librosa.filters.mel`` call in a process costs 0.9 CPU-s (its lazy
    imports), paid by every feature worker and every ``ser`` start. ``benchmarks/compare.sh``
    on the 487 sample files, 2026-12-01, both in one run: 1.44 CPU-s with these ports against
    1.90-1.96 CPU-s with librosa's two banks, 20-21x against 14-16x the reference's throughput
    (the target is 20x)."""
    triangles, area = _mel_triangles(sr, n_fft, n_mels)
    bank = triangles * area[:, None]
    bank.flags.writeable = False
    return bank


@functools.lru_cache(maxsize=4)
def mel_bank32(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """The bytes of ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)`` (its float32
    default): the triangles rounded to float32, then scaled by the area normalisation in float64
    and rounded again, as librosa does (``tests/test_extraction.py``). The GE2E encoder's input
    (:func:`pipeline.voice.melspectrogram`)."""
    triangles, area = _mel_triangles(sr, n_fft, n_mels)
    bank = (triangles.astype(np.float32) * area[:, None]).astype(np.float32)
    bank.flags.writeable = False
    return bank


def _mel_triangles(sr: int, n_fft: int, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """Slaney's triangles (n_mels, 1 + n_fft // 2) and their area normalisation (n_mels,), float64."""
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    return np.maximum(0.0, np.minimum(lower, upper)), 2.0 / (mel_hz[2:n_mels + 2] - mel_hz[:n_mels])


def chroma_bank(*, sr: int, n_fft: int, n_chroma: int) -> np.ndarray:
    """Chroma filter bank (n_chroma, 1 + n_fft // 2), float64: ``librosa.filters.chroma`` with
    tuning 0 and its defaults (ctroct 5, octwidth 2, norm 2, base_c), ported to NumPy (equal
    to librosa's, ``tests/test_extraction.py``). Why a port: its first call costs 1.36 CPU-s
    in a fresh process (0.45 CPU-s more than the mel bank's, numba compilation), see
    :func:`mel_bank` for the benchmark."""
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    frqbins = n_chroma * np.log2(frequencies / (440.0 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = round(float(n_chroma) / 2)
    d = np.remainder(d + half + 10 * n_chroma, n_chroma) - half
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    wts /= np.maximum(np.sqrt(np.sum(wts ** 2, axis=0, keepdims=True)), np.finfo(np.float64).tiny)
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - 5.0) / 2.0) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : 1 + n_fft // 2])


def hann(n: int) -> np.ndarray:
    """The periodic Hann window of ``n`` samples, float64: the bytes of
    ``scipy.signal.get_window("hann", n, fftbins=True)`` (librosa's STFT window), computed as
    scipy computes it (a cosine sum over ``n + 1`` points, the last dropped) without importing
    scipy.signal, which alone takes about 2 s of every stage process's start."""
    if n <= 1:
        return np.ones(n)
    fac = np.linspace(-np.pi, np.pi, n + 1)
    w = np.zeros(n + 1)
    for k, a in enumerate(np.asarray([0.5, 0.5])):
        w += a * np.cos(k * fac)
    return w[:-1]


def pad_center(w: np.ndarray, *, size: int) -> np.ndarray:
    """``w`` zero-padded on both sides to ``size`` (``librosa.util.pad_center``), float32."""
    lpad = (size - len(w)) // 2
    return np.pad(w, (lpad, size - len(w) - lpad)).astype(np.float32)


@dataclass(frozen=True)
class Kernels:
    window: np.ndarray       # (n_fft,) periodic Hann of win_length, zero-padded to the centre
    bands: tuple             # (first, stop, lo, hi, weights (hi - lo, stop - first)) per group of
                             # band columns: mel (seq), mel (utt), chroma; filters are zero outside lo:hi
    n_bands: int             # n_mels + utterance.n_mels + n_chroma
    moments: np.ndarray      # (F rounded up to whole roll-off blocks, 3 + n_blocks): [1, f, f**2, block sums]
    freqs: np.ndarray        # (F,) Hz


@functools.lru_cache(maxsize=8)
def kernels(config: FeatureConfig) -> Kernels:
    u = config.utterance
    chroma = chroma_bank(sr=config.sr, n_fft=config.n_fft, n_chroma=u.n_chroma)
    bands = np.concatenate([mel_bank(config.sr, config.n_fft, config.n_mels),
                            mel_bank(config.sr, config.n_fft, u.n_mels), chroma]).T
    freqs = np.fft.rfftfreq(config.n_fft, d=1.0 / config.sr)
    return Kernels(
        window=pad_center(hann(config.win_length), size=config.n_fft),
        bands=band_groups(bands),
        n_bands=bands.shape[1],
        moments=moments(freqs),
        freqs=freqs,
    )


def band_groups(bank: np.ndarray, *, width: int = 16) -> tuple:
    """Split a (F, n_bands) filter bank into groups of ``width`` columns, each with the bin
    range outside which all its filters are zero. Mel filters are narrow, so the grouped
    product reads about a fifth of what a dense ``S @ bank`` does."""
    groups = []
    for first in range(0, bank.shape[1], width):
        cols = bank[:, first:first + width]
        rows = np.flatnonzero(np.any(cols != 0, axis=1))
        lo, hi = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)
        groups.append((first, first + cols.shape[1], lo, hi, np.ascontiguousarray(cols[lo:hi])))
    return tuple(groups)


def project(S: np.ndarray, *, kernels: Kernels) -> np.ndarray:
    """``S @ bank`` for power spectrograms ``S`` (B, T, F): (B, T, n_bands) float64.

    The product is one matrix product per clip (a stacked matmul), never one over the
    batch's frames flattened: BLAS rounding depends on the row count, and a clip's features
    must not depend on which clips share its batch. It is float64 (as every product here):
    see "Same bits on any CPU" in :func:`extract`.
    """
    out = np.empty(S.shape[:2] + (kernels.n_bands,), dtype=np.float64)
    for first, stop, lo, hi, weights in kernels.bands:
        np.matmul(S[..., lo:hi], weights, out=out[..., first:stop])
    return out


def moments(freqs: np.ndarray) -> np.ndarray:
    """(F padded to whole blocks, 3 + n_blocks) float64: columns 1, f, f**2, then one indicator
    column per block of ``ROLL_BLOCK`` bins; padding rows are zero."""
    n_blocks = -(-len(freqs) // ROLL_BLOCK)
    m = np.zeros((n_blocks * ROLL_BLOCK, 3 + n_blocks))
    m[:len(freqs), :3] = np.stack([np.ones_like(freqs), freqs, freqs**2], axis=1)
    for b in range(n_blocks):
        m[b * ROLL_BLOCK:(b + 1) * ROLL_BLOCK, 3 + b] = 1.0
    return m
