"""Script text: cleaned to what a voice can say, and split into sentence-aligned chunks.

Chunks keep external speech models within the input length they accept and let progress
advance per chunk. Sentences are never split unless a single sentence is longer than a chunk.
"""

from __future__ import annotations

import re
import unicodedata

# The defaults of VIDSYNTH_MEDIA_WORDS_PER_MINUTE and VIDSYNTH_MEDIA_SECONDS_PER_CHUNK (media/config.py),
# which the built-in voice passes down.
DEFAULT_WORDS_PER_MINUTE = 150.0
DEFAULT_SECONDS_PER_CHUNK = 20.0

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")
_CLAUSE_BREAK = re.compile(r"(?<=[,;:\u2014\u2013])\s+")  # also after em and en dashes
_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
_STAGE_DIRECTION = re.compile(r"\[[^\]]*\]|\([^)]*(?:pause|music|sfx|applause|laughs?|beat)[^)]*\)", re.I)
_SPEAKER_LABEL = re.compile(r"^\s*(?:narrator|host|speaker|voice ?over|vo)\s*\d*\s*:\s*", re.I | re.M)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.M)
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.M)
_MARKUP_CHARS = re.compile(r"[*_`~#|<>{}\\^=]+")
_SPACES = re.compile(r"[ \t\f\v]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?])")


def clean_speakable(text: str) -> str:
    """Plain prose a speech engine reads well: no markdown, URLs, stage directions or emoji.

    Line breaks that end a heading or list item become sentence ends so they are spoken as pauses.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _MARKDOWN_LINK.sub(r"\1", text)
    text = _URL.sub("", text)
    text = _STAGE_DIRECTION.sub(" ", text)
    text = _HEADING.sub("", text)
    text = _LIST_MARKER.sub("", text)
    text = _MARKUP_CHARS.sub(" ", text)
    text = _SPEAKER_LABEL.sub("", text)
    # Drop emoji, control and other symbol characters; keep letters, digits, punctuation, spaces.
    text = "".join(ch for ch in text if ch in "\n\t " or unicodedata.category(ch)[0] in ("L", "N", "P", "Z"))
    sentences: list[str] = []
    for raw_line in text.splitlines():
        line = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", _SPACES.sub(" ", raw_line)).strip()
        if not line:
            continue
        if line[-1] not in ".!?…,;:\"')":
            line += "."
        sentences.append(line)
    return " ".join(sentences).strip()


def _split_long(sentence: str, max_words: int) -> list[str]:
    """A sentence longer than a chunk, split at clause breaks, else at word boundaries."""
    pieces: list[str] = []
    current: list[str] = []
    for clause in _CLAUSE_BREAK.split(sentence):
        words = clause.split()
        if current and len(current) + len(words) > max_words:
            pieces.append(" ".join(current))
            current = []
        while len(words) > max_words:
            pieces.append(" ".join(words[:max_words]))
            words = words[max_words:]
        current.extend(words)
    if current:
        pieces.append(" ".join(current))
    return pieces


def split_script(
    text: str,
    seconds_per_chunk: float = DEFAULT_SECONDS_PER_CHUNK,
    words_per_minute: float = DEFAULT_WORDS_PER_MINUTE,
) -> list[str]:
    """Speakable chunks of about `seconds_per_chunk` each, ending at sentence boundaries."""
    if seconds_per_chunk <= 0 or words_per_minute <= 0:
        raise ValueError("seconds_per_chunk and words_per_minute must be positive")
    max_words = max(1, round(seconds_per_chunk * words_per_minute / 60.0))
    cleaned = clean_speakable(text)
    chunks: list[str] = []
    current: list[str] = []
    current_words = 0
    for sentence in (s.strip() for s in _SENTENCE_END.split(cleaned)):
        if not sentence:
            continue
        for piece in _split_long(sentence, max_words):
            n = len(piece.split())
            if current and current_words + n > max_words:
                chunks.append(" ".join(current))
                current, current_words = [], 0
            current.append(piece)
            current_words += n
    if current:
        chunks.append(" ".join(current))
    return chunks


def word_count(text: str) -> int:
    return len(text.split())
