"""Measuring a voice with numpy: YIN pitch tracking and a syllable-rate speaking-speed estimate.

Pure functions on mono float32 samples; callers run them in a worker thread.
"""

from __future__ import annotations

import numpy as np

ANALYSIS_RATE = 16_000
MIN_F0_HZ = 60.0
MAX_F0_HZ = 420.0
_FRAME_SECONDS = 0.040
_HOP_SECONDS = 0.010
_YIN_THRESHOLD = 0.15
# Average syllables per English word; turns a syllable rate into words per minute.
_SYLLABLES_PER_WORD = 1.45


def _frames(samples: np.ndarray, frame: int, hop: int) -> np.ndarray:
    if samples.size < frame:
        return np.empty((0, frame), dtype=np.float32)
    count = 1 + (samples.size - frame) // hop
    return np.lib.stride_tricks.sliding_window_view(samples, frame)[::hop][:count]


def frame_rms(samples: np.ndarray, sample_rate: int, hop_seconds: float) -> np.ndarray:
    """Root-mean-square level of consecutive non-overlapping windows of `hop_seconds`."""
    hop = max(1, round(sample_rate * hop_seconds))
    count = int(np.ceil(samples.size / hop))
    padded = np.zeros(count * hop, dtype=np.float32)
    padded[: samples.size] = samples
    return np.sqrt(np.mean(padded.reshape(count, hop) ** 2, axis=1))


def pitch_track(samples: np.ndarray, sample_rate: int = ANALYSIS_RATE) -> np.ndarray:
    """F0 in Hz of every voiced 10 ms frame (unvoiced frames omitted), by the YIN method."""
    max_lag = int(sample_rate / MIN_F0_HZ)
    min_lag = int(sample_rate / MAX_F0_HZ)
    window = int(sample_rate * _FRAME_SECONDS)
    frames = _frames(samples.astype(np.float64), window + max_lag, int(sample_rate * _HOP_SECONDS))
    if frames.shape[0] == 0:
        return np.empty(0)
    level = np.sqrt(np.mean(frames[:, :window] ** 2, axis=1))
    loud = level > max(1e-4, 0.1 * float(np.percentile(level, 95)))
    frames = frames[loud]
    if frames.shape[0] == 0:
        return np.empty(0)
    # Difference function d(t) = e(0) + e(t) - 2 r(t), with r the cross-correlation via FFT.
    n_fft = 1 << int(np.ceil(np.log2(2 * frames.shape[1])))
    spectrum_full = np.fft.rfft(frames, n_fft)
    spectrum_head = np.fft.rfft(frames[:, :window], n_fft)
    corr = np.fft.irfft(np.conj(spectrum_head) * spectrum_full, n_fft)[:, : max_lag + 1]
    energy = np.cumsum(frames**2, axis=1)
    energy = np.concatenate([np.zeros((frames.shape[0], 1)), energy], axis=1)
    lags = np.arange(max_lag + 1)
    e_shifted = energy[:, lags + window] - energy[:, lags]
    diff = energy[:, [window]] + e_shifted - 2 * corr
    diff[:, 0] = 0.0
    # Cumulative mean normalised difference; its first dip under the threshold is the period.
    cumulative = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * lags[1:] / np.maximum(cumulative, 1e-12)
    below = cmnd[:, min_lag:] < _YIN_THRESHOLD
    voiced = below.any(axis=1)
    f0: list[float] = []
    for row, first in zip(np.nonzero(voiced)[0], below[voiced].argmax(axis=1), strict=True):
        lag = first + min_lag
        while lag + 1 <= max_lag and cmnd[row, lag + 1] < cmnd[row, lag]:
            lag += 1
        # Parabolic interpolation around the minimum for sub-sample precision.
        if 1 <= lag < max_lag:
            a, b, c = cmnd[row, lag - 1], cmnd[row, lag], cmnd[row, lag + 1]
            denominator = a - 2 * b + c
            offset = 0.5 * (a - c) / denominator if denominator > 1e-12 else 0.0
        else:
            offset = 0.0
        f0.append(sample_rate / (lag + offset))
    return np.asarray(f0)


def median_f0(samples: np.ndarray, sample_rate: int = ANALYSIS_RATE) -> float:
    """Median F0 in Hz over voiced frames; 0.0 when nothing is voiced."""
    track = pitch_track(samples, sample_rate)
    return float(np.median(track)) if track.size else 0.0


def speaking_rate(samples: np.ndarray, sample_rate: int = ANALYSIS_RATE) -> tuple[float, float]:
    """(words per minute, seconds of speech) estimated from syllable-like peaks of the energy envelope."""
    envelope = frame_rms(samples, sample_rate, _HOP_SECONDS)
    if envelope.size < 5 or float(envelope.max()) <= 1e-5:
        return 0.0, 0.0
    kernel = np.hanning(7)
    smooth = np.convolve(envelope, kernel / kernel.sum(), mode="same")
    db = 20 * np.log10(np.maximum(smooth, 1e-6))
    speech = db > db.max() - 30
    speech_seconds = float(speech.sum()) * _HOP_SECONDS
    # A syllable nucleus: a local maximum, loud enough, standing out from the dips around it.
    is_peak = (db[1:-1] > db[:-2]) & (db[1:-1] >= db[2:]) & speech[1:-1]
    candidates = np.nonzero(is_peak)[0] + 1
    min_gap = round(0.09 / _HOP_SECONDS)
    syllables = 0
    last = -min_gap
    for index in candidates:
        lo, hi = max(0, index - 12), min(db.size, index + 13)
        prominence = db[index] - max(db[lo:index].min(), db[index + 1 : hi].min() if index + 1 < hi else 0)
        if prominence >= 3.0 and index - last >= min_gap:
            syllables += 1
            last = index
    if speech_seconds <= 0:
        return 0.0, 0.0
    return syllables / speech_seconds * 60.0 / _SYLLABLES_PER_WORD, speech_seconds
