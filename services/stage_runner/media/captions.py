"""Captions from the timed words: cues split at sentence and clause ends, as WebVTT and SRT.

A cue ends at a sentence end; at a clause break (comma, semicolon, colon, dash) once it has a
few words; and never holds more than two short lines or about six seconds, so it can be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.stage_runner.media.alignment import Word

MAX_CUE_CHARS = 84  # two lines of 42, the usual broadcast limit
MAX_CUE_SECONDS = 6.0
MIN_CLAUSE_WORDS = 4
LINE_CHARS = 42
_SENTENCE_ENDS = (".", "!", "?", "…")
_CLAUSE_ENDS = (",", ";", ":", "—", "–")  # noqa: RUF001
_CLOSERS = "\"')]»”’"  # noqa: RUF001


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def _ends_with(word: str, marks: tuple[str, ...]) -> bool:
    return word.rstrip(_CLOSERS).endswith(marks)


def cues_from_words(words: list[Word], speech_end: float) -> list[Cue]:
    """Cues covering every word in order; the last ends with the speech (`speech_end`)."""
    groups: list[list[Word]] = []
    current: list[Word] = []
    for word in words:
        if current:
            chars = len(" ".join(w.text for w in [*current, word]))
            if chars > MAX_CUE_CHARS or word.end - current[0].start > MAX_CUE_SECONDS:
                groups.append(current)
                current = []
        current.append(word)
        if _ends_with(word.text, _SENTENCE_ENDS) or (
            _ends_with(word.text, _CLAUSE_ENDS) and len(current) >= MIN_CLAUSE_WORDS
        ):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    cues: list[Cue] = []
    for index, group in enumerate(groups):
        start = group[0].start
        # Stay up through the pause that follows, until the next cue (or the speech's end).
        end = groups[index + 1][0].start if index + 1 < len(groups) else max(speech_end, group[-1].end)
        cues.append(
            Cue(round(start, 3), round(max(end, start + 0.04), 3), _wrap(" ".join(w.text for w in group)))
        )
    return cues


def _wrap(text: str) -> str:
    """At most two lines, broken at the space nearest the middle when longer than one line."""
    if len(text) <= LINE_CHARS:
        return text
    middle = len(text) // 2
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if not spaces:
        return text
    split = min(spaces, key=lambda i: abs(i - middle))
    return text[:split] + "\n" + text[split + 1 :]


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _safe(text: str) -> str:
    # "-->" would end a cue's timing line early; "<" and "&" start WebVTT markup.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_webvtt(cues: list[Cue]) -> str:
    blocks = ["WEBVTT", ""]
    for index, cue in enumerate(cues, start=1):
        blocks += [
            str(index),
            f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}",
            _safe(cue.text),
            "",
        ]
    return "\n".join(blocks)


def to_srt(cues: list[Cue]) -> str:
    blocks = []
    for index, cue in enumerate(cues, start=1):
        text = cue.text.replace("-->", "->")
        blocks += [str(index), f"{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}", text, ""]
    return "\n".join(blocks)


def write_captions(words: list[Word], speech_end: float, out_dir: Path) -> dict[str, Path]:
    """Blocking. `out_dir/captions.vtt` and `out_dir/captions.srt` for the timed words."""
    cues = cues_from_words(words, speech_end)
    vtt, srt = out_dir / "captions.vtt", out_dir / "captions.srt"
    vtt.write_text(to_webvtt(cues), encoding="utf-8")
    srt.write_text(to_srt(cues), encoding="utf-8")
    return {"captions": vtt, "captions_srt": srt}
