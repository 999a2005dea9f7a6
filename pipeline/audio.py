"""Audio decoding and small waveform helpers shared by ingest, augment, features and inference.

Files are decoded by content with libsndfile (through soundfile), whatever their name says:
a ``.wav`` that really holds FLAC or MP3 is read as such. Every decoding problem (not audio,
empty, truncated, no frames, NaN or infinite samples, a constant signal, longer than the
caller's ``max_duration_s``) raises :class:`AudioError` with one line naming the file, the
problem and the fix. The remaining functions are pure (arrays in, arrays out).

Levels are in dBFS relative to a full-scale amplitude of 1.0: a full-scale sine has a peak of
0 dBFS and an RMS of -3.01 dBFS.

Examples
--------
>>> y = load("clip.wav", sr=16000)                                     # doctest: +SKIP
>>> y = normalize_loudness(y, mode="rms", target_dbfs=-23.0)         # doctest: +SKIP
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from pipeline.schema import LOUDNESS_MODES

# Subtypes whose frame count follows from the data size and block align of a RIFF/AIFF header.
_PCM_SUBTYPES = {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"}
# MP3 frame counts can be estimates (no Xing/LAME header); a shortfall up to this many
# frames (two MPEG-1 layer III frames) or 1 % is not reported as truncation.
_MP3_SLACK_FRAMES = 2 * 1152
_REFETCH = "re-copy or re-download it"
# libsndfile reports SF_COUNT_MAX frames when the header gives no length (a streamed FLAC).
_UNKNOWN_FRAMES = 2**62
_BLOCK_FRAMES = 1 << 16     # frames decoded at a time when the length is unknown or bounded
_MAX_SAMPLES_PER_S = 384_000  # a bounded decode (max_duration_s) takes at most 48 kHz x 8 channels' worth


class AudioError(ValueError):
    """A file cannot be decoded; the one-line message names the file, the problem and the fix."""


class AudioTooLong(AudioError):
    """The audio is longer than the caller's ``max_duration_s`` (found from the header, or
    while decoding when the header gives no length); nothing past the limit is decoded."""


@dataclass(frozen=True)
class AudioInfo:
    """What libsndfile reports about a file, without decoding it.

    ``format`` is the real container as detected from the content (``"WAV"``, ``"FLAC"``,
    ``"MP3"``, ``"OGG"``, ``"AIFF"``, ...), not the file name's suffix. ``frames`` and
    ``duration_s`` are None when the header gives no length (a streamed FLAC).
    """

    frames: int | None
    sample_rate: int
    channels: int
    duration_s: float | None
    format: str
    subtype: str


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file; pass a file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: zero-length file (0 bytes); {_REFETCH}")


def _open_error(path: Path, err: Exception) -> AudioError:
    detail = str(err).replace(f"Error opening {str(path)!r}: ", "").strip().rstrip(".")
    return AudioError(f"{path}: not audio libsndfile can decode ({detail or type(err).__name__}); "
                      f"check the file, or convert it to WAV or FLAC")


def _declared_frames(path: Path, *, format: str, subtype: str) -> int | None:
    """Frame count written in a RIFF (WAV, RF64) or AIFF header, or None if unknown.

    libsndfile silently shortens the frame count of a PCM file whose data chunk runs past the
    end of the file, so the header is read here to tell a truncated file from a short one.
    """
    if subtype not in _PCM_SUBTYPES or format not in {"WAV", "WAVEX", "RF64", "AIFF"}:
        return None
    try:
        with path.open("rb") as f:
            head = f.read(1 << 12)
            if head[:4] in (b"RIFF", b"RF64", b"FORM") and head.find(b"data" if head[:4] != b"FORM" else b"COMM") < 0:
                head += f.read(1 << 20)                      # long metadata chunks before the data
    except OSError:
        return None
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        block_align, data_size, pos = None, None, 12
        ds64_data = None
        while pos + 8 <= len(head):
            cid, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
            if cid == b"ds64" and pos + 24 <= len(head):
                ds64_data = struct.unpack("<Q", head[pos + 16:pos + 24])[0]
            elif cid == b"fmt " and pos + 22 <= len(head):
                block_align = struct.unpack("<H", head[pos + 20:pos + 22])[0]
            elif cid == b"data":
                data_size = ds64_data if (head[:4] == b"RF64" and size == 0xFFFFFFFF) else size
                break
            pos += 8 + size + (size & 1)
        if not block_align or not data_size or data_size >= 0x7FFF0000:
            return None  # streamed WAVs leave the size unset or at a placeholder; nothing to compare
        return data_size // block_align
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        pos = 12
        while pos + 8 <= len(head):
            cid, size = head[pos:pos + 4], struct.unpack(">I", head[pos + 4:pos + 8])[0]
            if cid == b"COMM" and pos + 14 <= len(head):
                return struct.unpack(">I", head[pos + 10:pos + 14])[0]
            pos += 8 + size + (size & 1)
    return None


def _open(path: Path) -> sf.SoundFile:
    _check_file(path)
    try:
        return sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise _open_error(path, err) from None
    except OSError as err:
        raise AudioError(f"{path}: cannot be read ({err}); check permissions and the disk") from None


def _describe(f: sf.SoundFile, path: Path) -> AudioInfo:
    if f.frames <= 0:
        declared = _declared_frames(path, format=f.format, subtype=f.subtype)
        if declared:
            raise AudioError(f"{path}: truncated: header says {declared} frames, decoded 0; {_REFETCH}")
        raise AudioError(f"{path}: no audio frames (header only or empty stream); {_REFETCH}")
    frames = int(f.frames) if f.frames < _UNKNOWN_FRAMES else None
    return AudioInfo(frames=frames, sample_rate=int(f.samplerate), channels=int(f.channels),
                     duration_s=None if frames is None else frames / f.samplerate, format=f.format, subtype=f.subtype)


def info(path: str | Path) -> AudioInfo:
    """Describe an audio file from its header (no full decode).

    Parameters
    ----------
    path : str or Path
        Any file libsndfile can read (WAV, FLAC, OGG, MP3, AIFF, ...), detected by content.

    Returns
    -------
    AudioInfo
        ``frames`` is what libsndfile reports; for a truncated PCM file that is the frames
        actually present (use :func:`read` to detect truncation).

    Raises
    ------
    AudioError
        The file is missing, empty, not audio, or holds no audio frames.
    """
    path = Path(path)
    with _open(path) as f:
        return _describe(f, path)


def read(path: str | Path, *, dtype: str = "float32", max_duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a whole file, whatever its real container, and check its samples.

    Parameters
    ----------
    path : str or Path
        Audio file; the container is detected from the content, not the suffix.
    dtype : {"float32", "float64", "int16", "int32"}
        Sample type; floats are in [-1, 1].
    max_duration_s : float, optional
        Refuse audio longer than this (:class:`AudioTooLong`): from the header before any
        decoding when it gives the length, else while decoding, so that memory stays bounded
        by the limit whatever the file claims; and refuse, with it, more than 384,000 samples
        per second (channels x rate: 48 kHz with 8 channels, 192 kHz stereo), so that the
        bound holds in bytes too (600 s: at most 0.9 GB of float32).

    Returns
    -------
    y : np.ndarray [shape=(n_samples, n_channels)]
    sr : int
        Sample rate of the file in Hz.

    Raises
    ------
    AudioError
        Missing or zero-length file, non-audio bytes, no frames, a truncated file
        ("truncated: header says N frames, decoded M"), or samples :func:`check_samples`
        refuses (NaN, infinite, constant).
    """
    path = Path(path)
    with _open(path) as f:
        i = _describe(f, path)
        limit = None if max_duration_s is None else int(math.floor(max_duration_s * i.sample_rate))
        if limit is not None and i.frames is not None and i.frames > limit:
            raise AudioTooLong(f"{path}: too long: {i.duration_s:.1f} s of audio (from its header); the limit is "
                               f"{max_duration_s:g} s; cut it into shorter files")
        if limit is not None and i.sample_rate * i.channels > _MAX_SAMPLES_PER_S:
            # the limit bounds memory as max_duration_s of 48 kHz with 8 channels: more channels or a
            # higher rate would let a small compressed file decode to gigabytes within the duration
            raise AudioTooLong(f"{path}: {i.channels} channels at {i.sample_rate} Hz: more than the "
                               f"{_MAX_SAMPLES_PER_S:,} samples per second a bounded decode takes (48 kHz x 8 channels); "
                               "mix it down or resample it first")
        declared = _declared_frames(path, format=i.format, subtype=i.subtype) or i.frames
        try:
            if limit is None and i.frames is not None:
                y = f.read(dtype=dtype, always_2d=True)
            else:
                y = _read_blocks(f, dtype=dtype, channels=i.channels, limit=limit)
        except (sf.LibsndfileError, RuntimeError):
            decoded = _count_decodable(path)
            raise AudioError(f"{path}: truncated or corrupt: header says {declared or 'unknown'} frames, decoded "
                             f"{decoded} before decoding failed; {_REFETCH}") from None
    if limit is not None and len(y) > limit:
        raise AudioTooLong(f"{path}: too long: more than {max_duration_s:g} s of audio (the limit; decoding stopped "
                           "there); cut it into shorter files")
    if declared is not None:
        slack = max(_MP3_SLACK_FRAMES, declared // 100) if i.format == "MP3" else 0
        if len(y) + slack < declared:
            raise AudioError(f"{path}: truncated: header says {declared} frames, decoded {len(y)}; {_REFETCH}")
    if len(y) == 0:
        raise AudioError(f"{path}: no audio frames decoded; {_REFETCH}")
    check_samples(y, name=str(path))
    return y, i.sample_rate


def _read_blocks(f: sf.SoundFile, *, dtype: str, channels: int, limit: int | None) -> np.ndarray:
    """Decode ``f`` block by block, stopping one frame past ``limit`` (None: to the end).

    Calls libsndfile's ``sf_readf_*`` directly: ``SoundFile.read`` seeks after every read,
    and that seek fails at the end of a FLAC whose header gives no length.
    """
    ctype = sf._ffi_types[np.dtype(dtype).name]
    read_frames = getattr(sf._snd, f"sf_readf_{ctype}")
    blocks, n = [], 0
    while limit is None or n <= limit:
        block = np.empty((_BLOCK_FRAMES if limit is None else min(_BLOCK_FRAMES, limit + 1 - n), channels), dtype=dtype)
        got = int(read_frames(f._file, sf._ffi.cast(ctype + "*", block.ctypes.data), len(block)))
        if f._errorcode:
            raise sf.LibsndfileError(f._errorcode)
        if got <= 0:
            break
        blocks.append(block[:got])
        n += got
    return np.concatenate(blocks) if blocks else np.zeros((0, channels), dtype=dtype)


def check_samples(y: np.ndarray, *, name: str) -> None:
    """Refuse samples no recording holds, with one line naming ``name``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (n, n_channels)]
        Decoded samples (floats in [-1, 1], or integers).
    name : str
        The file (or input) the samples came from, for the message.

    Raises
    ------
    AudioError
        "NaN samples", "infinite samples" (a float file, or a corrupt decoder output), or
        "constant signal (DC)": every channel varies by at most one 16-bit step while its
        level is above that step (what NaN becomes in 16-bit PCM; all-zero audio is left to
        the callers' silence rules).
    """
    y = np.asarray(y)
    if y.size == 0:
        return
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        if not finite.all():
            n_nan = int(np.count_nonzero(np.isnan(y)))
            n_inf = y.size - int(np.count_nonzero(finite)) - n_nan
            what = " and ".join(w for w, n in (("NaN", n_nan), ("infinite", n_inf)) if n)
            raise AudioError(f"{name}: {what} samples ({n_nan + n_inf:,} of {y.size:,}); the file is corrupt: "
                             "re-export the recording, or remove it")
        step = 2.0 ** -15
    else:
        step = (int(np.iinfo(y.dtype).max) + 1) / 2 ** 15
    y2 = y.reshape(len(y), -1)
    hi, lo = y2.max(axis=0).astype(np.float64), y2.min(axis=0).astype(np.float64)   # no integer wrap-around
    if np.all(hi - lo <= step) and float(np.max(np.maximum(np.abs(hi), np.abs(lo)))) > step:
        level = float(np.mean(y2, dtype=np.float64)) / (1.0 if y.dtype.kind == "f" else step * 2 ** 15)
        raise AudioError(f"{name}: constant signal (DC at {level:+.3f} of full scale), no sound in it; "
                         "re-record or re-export it, or remove it")


def _count_decodable(path: Path, *, block: int = 4096) -> int:
    """Frames libsndfile decodes before it fails (for the truncation message)."""
    n = 0
    try:
        with sf.SoundFile(str(path)) as f:
            while True:
                got = len(f.read(block, dtype="int16"))
                if got == 0:
                    return n
                n += got
    except (sf.LibsndfileError, RuntimeError, OSError):
        return n


def to_mono(y: np.ndarray) -> np.ndarray:
    """Average the channels of ``y`` [shape=(n,) or (n, n_channels)] into shape (n,)."""
    y = np.asarray(y)
    if y.ndim == 1:
        return y
    if y.ndim != 2:
        raise ValueError(f"expected audio of shape (n,) or (n, channels), got {y.shape}")
    return y[:, 0] if y.shape[1] == 1 else y.mean(axis=1, dtype=y.dtype if y.dtype.kind == "f" else np.float64)


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``y`` [shape=(n,) or (n, n_channels)] from ``orig_sr`` to ``target_sr`` Hz.

    Uses soxr at "HQ" quality; returns ``y`` itself when the rates are equal. The output has
    about ``n * target_sr / orig_sr`` samples (soxr rounds) along the first axis.
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be > 0 Hz, got orig_sr={orig_sr}, target_sr={target_sr}")
    if orig_sr == target_sr:
        return y
    return soxr.resample(y, orig_sr, target_sr, quality="HQ")


def load(path: str | Path, *, sr: int, max_duration_s: float | None = None) -> np.ndarray:
    """Decode ``path`` (checked as by :func:`read`), mix to mono and resample to ``sr`` Hz.

    Returns
    -------
    y : np.ndarray [shape=(n,), dtype=float32]
        Samples in [-1, 1] (resampling may overshoot slightly near full scale).
    """
    y, file_sr = read(path, dtype="float32", max_duration_s=max_duration_s)
    y = resample(to_mono(y), orig_sr=file_sr, target_sr=sr)
    return np.ascontiguousarray(y, dtype=np.float32)


def peak_dbfs(y: np.ndarray) -> float:
    """Peak level of ``y`` (any shape) in dBFS; ``-inf`` for silence or an empty array."""
    peak = float(np.max(np.abs(y))) if np.size(y) else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else -np.inf


def rms_dbfs(y: np.ndarray) -> float:
    """RMS level of ``y`` (any shape, all samples together) in dBFS; ``-inf`` for silence."""
    ms = float(np.mean(np.square(y, dtype=np.float64))) if np.size(y) else 0.0
    return 10.0 * np.log10(ms) if ms > 0 else -np.inf


def normalize_loudness(y: np.ndarray, *, mode: str, target_dbfs: float) -> np.ndarray:
    """Scale ``y`` so its peak or RMS level is ``target_dbfs``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (n, n_channels)]
    mode : {"none", "peak", "rms"}
        ``"none"`` returns ``y`` unchanged.
    target_dbfs : float
        Target level in dBFS.

    Returns
    -------
    np.ndarray, same shape and dtype as ``y``
        Silence is returned unchanged. If the gain would push the peak above 1.0 (a loud
        RMS target on a peaky clip), the result is scaled down so that ``max|y| == 1``:
        never clipped, possibly quieter than the target.
    """
    if mode not in LOUDNESS_MODES:
        raise ValueError(f"loudness mode {mode!r} is not valid; choose one of {list(LOUDNESS_MODES)}")
    if mode == "none":
        return y
    level = peak_dbfs(y) if mode == "peak" else rms_dbfs(y)
    if not np.isfinite(level):
        return y
    gain = 10.0 ** ((target_dbfs - level) / 20.0)
    peak = float(np.max(np.abs(y))) * gain
    if peak > 1.0:
        gain /= peak
    return (y * gain).astype(y.dtype, copy=False)
