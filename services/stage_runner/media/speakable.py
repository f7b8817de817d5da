"""What the built-in English voices can say: Latin letters, digits and punctuation.

Typographic marks become their plain forms, accented Latin letters stay (espeak-ng reads them),
words in other scripts (which Piper's English voice would skip or spell out as noise) are left
out and counted. A script with nothing left is refused with SCRIPT_NOT_SPEAKABLE.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from libs.common.errors import VidsynthError

_PLAIN = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2013": ", ",
        "\u2014": ", ",
        "\u2026": "...",
        "\u00a0": " ",
        "&": " and ",
        "%": " percent",
        "+": " plus ",
        "@": " at ",
    }
)
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?])")
_REPEATED_COMMAS = re.compile(r"(?:,\s*){2,}")
_DOT_RUNS = re.compile(r"\.(?:\s*\.)+")


@dataclass(frozen=True)
class SpeakableText:
    text: str
    dropped_words: int


def _is_latin_letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L") and "LATIN" in unicodedata.name(ch, "")


def _speakable_word(word: str) -> str | None:
    """The word as the voice can read it, or None when it is in another script."""
    letters = [ch for ch in word if unicodedata.category(ch).startswith("L")]
    if letters and not any(_is_latin_letter(ch) for ch in letters):
        return None
    kept = "".join(
        ch
        for ch in word
        if _is_latin_letter(ch) or ch.isdigit() or unicodedata.category(ch).startswith("P") or ch in "$€£"
    )
    return kept or None


def speakable(text: str) -> SpeakableText:
    """`text` reduced to what the built-in voices read; SCRIPT_NOT_SPEAKABLE when nothing is left."""
    plain = unicodedata.normalize("NFKC", text).translate(_PLAIN)
    kept: list[str] = []
    dropped = 0
    for word in plain.split():
        spoken = _speakable_word(word)
        if spoken is None:
            dropped += 1
        else:
            kept.append(spoken)
    result = _REPEATED_COMMAS.sub(
        ", ", _SPACE_BEFORE_PUNCTUATION.sub(r"\1", _SPACES.sub(" ", " ".join(kept)))
    )
    result = _DOT_RUNS.sub("...", result).strip(" ,")
    if not any(ch.isalnum() for ch in result):
        raise VidsynthError(
            "SCRIPT_NOT_SPEAKABLE",
            "The script has no words the built-in English voice can speak "
            f"({dropped} word(s) in other scripts were left out).",
        )
    return SpeakableText(result, dropped)
