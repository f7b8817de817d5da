"""When each phoneme and word of the speech is said: from Piper's alignments, or estimated.

The voice stage writes it as `alignment.json`; the animate stage turns phones into visemes and
the captions come from its words. With espeak-ng (no alignments) only chunk times are known, so
words are spread over each chunk by their length and `phones` is empty.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Piper marks the utterance's start and end and word gaps with these; stress and length marks
# carry no sound of their own (their samples belong to the neighbouring phones).
SENTENCE_START, SENTENCE_END, WORD_GAP = "^", "$", " "
_MODIFIERS = frozenset("ˈˌːˑ")
_PUNCTUATION = frozenset(",.;:!?¡¿—…\"'()-")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Phone:
    phoneme: str
    start: float
    end: float


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float


@dataclass
class Alignment:
    duration: float
    source: str  # "piper" (per-phoneme alignments) or "estimate" (chunk times only)
    phones: list[Phone] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Alignment:
        data = json.loads(text)
        return cls(
            duration=float(data["duration"]),
            source=str(data["source"]),
            phones=[Phone(str(p["phoneme"]), float(p["start"]), float(p["end"])) for p in data["phones"]],
            words=[Word(str(w["text"]), float(w["start"]), float(w["end"])) for w in data["words"]],
        )

    def write(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Alignment:
        return cls.from_json(path.read_text(encoding="utf-8"))


def is_sounding(phoneme: str) -> bool:
    """A phone that is a speech sound (not a marker, word gap, stress mark or punctuation)."""
    return (
        bool(phoneme)
        and phoneme not in (SENTENCE_START, SENTENCE_END, WORD_GAP)
        and not (set(phoneme) <= _MODIFIERS | _PUNCTUATION)
    )


def phones_from_sentences(sentences: list[list[tuple[str, int]]], rate: int, offset: float) -> list[Phone]:
    """Phones with times from Piper's per-sentence (phoneme, samples) lists, laid end to end.

    `sentences` must be in the order they were joined, each followed by its own pause if any
    (see `sentence_spans`)."""
    phones: list[Phone] = []
    clock = offset
    for sentence in sentences:
        for phoneme, samples in sentence:
            end = clock + samples / rate
            phones.append(Phone(phoneme, clock, end))
            clock = end
    return phones


def _word_groups(phones: list[Phone]) -> list[list[Phone]]:
    """Runs of sounding phones between word gaps and sentence markers."""
    groups: list[list[Phone]] = []
    current: list[Phone] = []
    for phone in phones:
        if phone.phoneme in (WORD_GAP, SENTENCE_START, SENTENCE_END) or set(phone.phoneme) <= _PUNCTUATION:
            if current:
                groups.append(current)
            current = []
        elif is_sounding(phone.phoneme):
            current.append(phone)
    if current:
        groups.append(current)
    return groups


def text_words(text: str) -> list[str]:
    """The text's words; tokens without letters or digits ("...", "-") are pauses, not words."""
    return [token for token in _WORD.findall(text) if any(ch.isalnum() for ch in token)]


def words_from_phones(text: str, phones: list[Phone]) -> list[Word]:
    """The text's words timed by the phones: one to one when the word counts agree (the usual
    case), else spread by letter count over the phones' span (numbers and abbreviations that
    espeak expands into several words)."""
    words = text_words(text)
    groups = _word_groups(phones)
    if not words or not groups:
        return []
    if len(groups) == len(words):
        return [Word(w, g[0].start, g[-1].end) for w, g in zip(words, groups, strict=True)]
    return spread_words(words, groups[0][0].start, groups[-1][-1].end)


def spread_words(words: list[str], start: float, end: float) -> list[Word]:
    """`words` over `start..end`, each taking a share of time by its letter count."""
    weights = [max(1, sum(ch.isalnum() for ch in w)) for w in words]
    total = float(sum(weights))
    timed: list[Word] = []
    clock = start
    for word, weight in zip(words, weights, strict=True):
        length = (end - start) * weight / total
        timed.append(Word(word, clock, clock + length))
        clock += length
    return timed
