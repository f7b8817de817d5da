"""Mouth shapes from phonemes: Preston Blair visemes as Rhubarb Lip Sync uses them.

Rhubarb's shapes: A (M, B, P: lips pressed), B (most consonants, ee: slightly open, teeth
together), C (eh, ae: open), D (aa: wide open), E (ao, er: slightly rounded), F (uw, ow, w:
puckered), G (F, V: lower lip to upper teeth), H (L: tongue up, open), X (rest). Each shape has
an opening and a width target. Per video frame the targets are co-articulated (a phone's shape
leans towards its neighbours' by a short smoothing), lips are held shut through every bilabial,
the opening scales with the speech's loudness, and pauses relax to the rest pose.
"""

from __future__ import annotations

import numpy as np

from services.stage_runner.media.alignment import Phone, is_sounding

# shape -> (opening 0..1, width -1 rounded .. 1 spread)
SHAPES: dict[str, tuple[float, float]] = {
    "A": (0.0, 0.0),
    "B": (0.22, 0.35),
    "C": (0.55, 0.25),
    "D": (0.95, 0.1),
    "E": (0.45, -0.45),
    "F": (0.22, -1.0),
    "G": (0.12, 0.15),
    "H": (0.5, 0.0),
    "X": (0.0, 0.0),
}
BILABIALS = frozenset("pbm")
# espeak-ng IPA as Piper's voices use it (with the diphthongs Piper keeps as two phones).
_SHAPE_OF = {
    **dict.fromkeys(["p", "b", "m"], "A"),
    **dict.fromkeys(["f", "v"], "G"),
    **dict.fromkeys(["l", "ɫ"], "H"),
    **dict.fromkeys(["w", "u", "ʊ", "o", "ɒ"], "F"),
    **dict.fromkeys(["ɔ", "ɜ", "ɚ", "ɝ", "ɹ", "r"], "E"),
    **dict.fromkeys(["ɑ", "a", "ɐ", "aɪ", "aʊ"], "D"),  # noqa: RUF001 (IPA)
    **dict.fromkeys(["æ", "ɛ", "e", "ʌ", "ə", "ᵻ"], "C"),
    **dict.fromkeys(["i", "ɪ", "j"], "B"),  # noqa: RUF001 (IPA)
}
# How far each frame's shape leans into its neighbours': Gaussian sigma in seconds.
COARTICULATION_SECONDS = 0.035
# Lips stay pressed over the middle of a bilabial, at least this long.
MIN_CLOSURE_SECONDS = 0.05
PAUSE_SECONDS = 0.15


def shape_of(phoneme: str) -> str:
    """The Rhubarb shape of one phone: X for silence and markers, B for other consonants."""
    if not is_sounding(phoneme):
        return "X"
    core = phoneme.strip("ˈˌːˑ")
    if core in _SHAPE_OF:
        return _SHAPE_OF[core]
    return _SHAPE_OF.get(core[:1], "B")


def _smooth(values: np.ndarray, fps: int) -> np.ndarray:
    sigma = COARTICULATION_SECONDS * fps
    radius = max(1, int(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, radius, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def frame_targets(phones: list[Phone], fps: int, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame (opening, width, bilabial hold) from the timed phones, before loudness."""
    opening = np.zeros(frames)
    width = np.zeros(frames)
    held = np.zeros(frames, dtype=bool)
    times = (np.arange(frames) + 0.5) / fps
    # Sample each frame's phone, with the vowel the stress/length mark belongs to.
    starts = np.array([p.start for p in phones]) if phones else np.zeros(0)
    index = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, max(0, len(phones) - 1))
    for frame, phone_index in enumerate(index if phones else []):
        phone = phones[phone_index]
        shape = shape_of(phone.phoneme)
        if shape == "X" and phone.phoneme in "ˈˌːˑ" and phone_index + 1 < len(phones):
            shape = shape_of(phones[phone_index + 1].phoneme)
        if shape == "X" and phone.end - phone.start < PAUSE_SECONDS and phone.phoneme == " ":
            # A short word gap keeps the mouth where it was, not a snap to rest.
            shape = "B"
        opening[frame], width[frame] = SHAPES[shape]
    for phone in phones:
        if phone.phoneme.strip("ˈˌː") in BILABIALS:
            middle = (phone.start + phone.end) / 2
            half = max(MIN_CLOSURE_SECONDS, phone.end - phone.start) / 2
            first = int(np.floor((middle - half) * fps))
            last = int(np.floor((middle + half) * fps))
            held[max(0, first) : max(0, min(frames, last + 1))] = True
    return opening, width, held


def loudness(samples: np.ndarray, sample_rate: int, fps: int, frames: int) -> np.ndarray:
    """Per frame 0..1: the speech level relative to its loud parts (1 at the 95th percentile)."""
    hop = sample_rate / fps
    edges = (np.arange(frames + 1) * hop).astype(int)
    edges[-1] = min(edges[-1], samples.size)
    squares = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    counts = np.maximum(1, np.diff(np.clip(edges, 0, samples.size)))
    energy = (
        squares[np.clip(edges[1:], 0, samples.size)] - squares[np.clip(edges[:-1], 0, samples.size)]
    ) / counts
    level = np.sqrt(np.maximum(energy, 0))
    loud = float(np.percentile(level, 95)) if frames else 0.0
    return np.clip(level / loud, 0.0, 1.0) if loud > 0 else np.zeros(frames)


def mouth_track(
    phones: list[Phone], samples: np.ndarray, sample_rate: int, fps: int, frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame (opening, width): visemes co-articulated, shut on bilabials, loudness-scaled."""
    opening, width, held = frame_targets(phones, fps, frames)
    opening = _smooth(opening, fps)
    width = _smooth(width, fps)
    level = loudness(samples, sample_rate, fps, frames)
    # Loud syllables open wider, soft ones less; never below 60 % so consonants still show.
    opening = opening * (0.6 + 0.55 * _smooth(level, fps))
    opening[held] = 0.0
    return np.clip(opening, 0.0, 1.2), np.clip(width, -1.0, 1.0)
