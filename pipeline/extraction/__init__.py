"""Feature extraction: frame sequences and utterance vectors from fixed-length clips, all from one STFT.

Pure functions, arrays in and arrays out (file I/O lives in the ``features`` stage,
:mod:`pipeline.features`). Modules: :mod:`~pipeline.extraction.config` (what defines the
features), :mod:`~pipeline.extraction.clips` (waveform to fixed-length clip),
:mod:`~pipeline.extraction.banks` (filter banks, once per setting; NumPy ports of librosa's,
kept for start-up cost: see :func:`~pipeline.extraction.banks.mel_bank`) and
:mod:`~pipeline.extraction.frames` (the extraction).
A batch of clips at ``config.sr`` is cropped or zero-padded to ``config.seconds``
(:func:`prepare`), then :func:`extract` frames the whole batch once (``center=True``,
zero padding, periodic Hann window of ``win_length`` centred in ``n_fft``, as
``librosa.stft``), takes one real FFT and one power spectrogram ``S``, and derives:

- sequence features, per frame, concatenated in ``config.sequence`` order:
  ``logmel`` = ``10 * log10(max(mel @ S, 1e-10))`` in absolute dB (no ``ref``, no
  ``top_db``, so values are comparable across clips); ``mfcc`` = DCT-II (ortho) of that
  log-mel, i.e. ``librosa.feature.mfcc(S=logmel)``; optional ``d_mfcc`` (``librosa.feature.delta``,
  width 9); ``zcr`` and ``rms`` over ``n_fft``-sample frames, equal to
  ``librosa.feature.zero_crossing_rate`` and ``librosa.feature.rms`` with ``center=True``;
  ``pitch`` = two columns, ``f0_semitones`` (semitones above 27.5 Hz in voiced frames, 0 in
  the others, as eGeMAPS's ``F0semitoneFrom27.5Hz``) and ``voicing`` (the frame's peak
  normalised autocorrelation), Praat-style (normalised autocorrelation, 75-600 Hz) over its
  own 40 ms frames on the same centres (:func:`~pipeline.extraction.frames.pitch`): the spectral
  features above cannot show f0, the main prosodic cue of emotion; ``ge2e`` = 256 columns, the
  second LSTM layer's outputs of a pretrained GE2E voice encoder run over the clip's real audio on
  its own 40-band mel frames (25 ms windows, 10 ms hop, so it needs ``hop_length = sr / 100``),
  zero in the padding (:func:`pipeline.voice.frames`; needs the weights of
  ``requirements-weights.txt``).
- the utterance vector, averaged over the frames that hold real audio: MFCC mean (and std),
  chroma mean (``chroma_stft``, tuning 0), mel power mean, spectral centroid, roll-off (0.85)
  and bandwidth (p=2) from the magnitude ``sqrt(S)``, ZCR and RMS -- the write-ups' vector
  (their recipe: :file:`seed_features.py`) computed from the same single STFT. Its MFCCs use
  the utterance mel bank (``utterance.n_mels`` bands, 128 as in ``librosa.feature.mfcc``).

Frames are numbered like librosa: frame ``t`` is centred on sample ``t * hop_length``.

Examples
--------
>>> config = FeatureConfig.from_params(params["features"], sr=16000)        # doctest: +SKIP
>>> y_fixed, n_valid = prepare(audio.load("clip.wav", sr=config.sr), config=config)  # doctest: +SKIP
>>> out = extract(y_fixed[None], [n_valid], config=config)                  # doctest: +SKIP
>>> out["sequence"].shape, out["utterance"].shape                          # doctest: +SKIP
((1, 301, 106), (1, 225))
"""
from __future__ import annotations

from pipeline.extraction.clips import fix_length, prepare, trim
from pipeline.extraction.config import CROPS, SEQUENCE_FEATURES, FeatureConfig, UtteranceConfig, n_valid_frames
from pipeline.extraction.frames import extract, power_spectrogram

__all__ = ["CROPS", "SEQUENCE_FEATURES", "FeatureConfig", "UtteranceConfig", "extract", "fix_length", "n_valid_frames",
           "power_spectrogram", "prepare", "trim"]
