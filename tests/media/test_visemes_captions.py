"""Visemes from phones and captions from words: pure functions, hand-made inputs."""

# ruff: noqa: RUF001 (IPA phonemes)

from __future__ import annotations

import itertools

import numpy as np
import pytest

from libs.common.errors import VidsynthError
from services.stage_runner.media.alignment import Phone, Word, text_words, words_from_phones
from services.stage_runner.media.captions import cues_from_words, to_srt, to_webvtt
from services.stage_runner.media.speakable import speakable
from services.stage_runner.media.visemes import mouth_track, shape_of

FPS = 25


def timed(phonemes: str, seconds: float = 0.1) -> list[Phone]:
    """Phones of `seconds` each, one per character ('_' is a word gap)."""
    return [Phone(" " if p == "_" else p, i * seconds, (i + 1) * seconds) for i, p in enumerate(phonemes)]


def test_phonemes_map_to_rhubarb_shapes():
    assert [shape_of(p) for p in ("p", "b", "m")] == ["A", "A", "A"]
    assert shape_of("ɑ") == "D" and shape_of("æ") == "C" and shape_of("u") == "F"
    assert shape_of("f") == "G" and shape_of("l") == "H" and shape_of("s") == "B"
    assert shape_of(" ") == "X" and shape_of("^") == "X" and shape_of(",") == "X" and shape_of("ˈ") == "X"


def test_lips_are_shut_through_every_bilabial_and_open_on_open_vowels():
    phones = timed("^mɑpɑbɑm$")
    frames = round(phones[-1].end * FPS)
    speech = np.ones(frames * 640, dtype=np.float32) * 0.3  # steady loudness: only visemes matter
    opening, _ = mouth_track(phones, speech, 16_000, FPS, frames)
    for phone in phones:
        middle = int((phone.start + phone.end) / 2 * FPS)
        if phone.phoneme in "mpb":
            assert opening[middle] == 0.0, phone
        if phone.phoneme == "ɑ":
            assert opening[middle] > 0.5, (phone, opening[middle])


def test_opening_follows_loudness_and_rests_in_pauses():
    phones = [
        *timed("^ɑɑɑɑ"),
        Phone(" ", 0.5, 1.5),
        *[Phone("ɑ", 1.5 + i * 0.1, 1.6 + i * 0.1) for i in range(5)],
    ]
    frames = round(2.0 * FPS)
    speech = np.zeros(frames * 640, dtype=np.float32)
    speech[: 640 * 12] = 0.5  # first vowels loud
    speech[640 * 37 :] = 0.1  # last vowels soft
    opening, width = mouth_track(phones, speech, 16_000, FPS, frames)
    assert opening[20:32].max() == pytest.approx(0.0, abs=0.02)  # the long pause: rest
    assert opening[5] > opening[45] * 1.3  # loud opens wider than soft
    assert abs(width[25]) < 0.05


def test_words_are_timed_by_their_phone_groups():
    phones = timed("^hɛloʊ_wɜld,_jɛs$")
    words = words_from_phones("Hello world, yes", phones)
    assert [w.text for w in words] == ["Hello", "world,", "yes"]
    assert words[0].start == pytest.approx(0.1) and words[0].end == pytest.approx(0.6)
    assert words[2].start == pytest.approx(phones[13].start)
    assert text_words("Wait ... what - now") == ["Wait", "what", "now"]


def test_cues_split_at_sentences_and_clauses_and_end_with_the_speech():
    script = (
        "Welcome to the show. Today, we will look at three things, then we will talk about "
        "what they mean for you and your family. Thanks!"
    )
    text = script.split(" ")
    words = [Word(w, i * 0.4, i * 0.4 + 0.3) for i, w in enumerate(text)]
    speech_end = words[-1].end + 0.4
    cues = cues_from_words(words, speech_end)
    spoken = " ".join(c.text.replace("\n", " ") for c in cues)
    assert spoken == " ".join(text)
    assert cues[0].text == "Welcome to the show."
    assert cues[-1].text == "Thanks!" and cues[-1].end == pytest.approx(speech_end)
    assert any(c.text.endswith("three things,") for c in cues)
    assert all(len(line) <= 42 for c in cues for line in c.text.split("\n"))
    assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(cues))
    vtt = to_webvtt(cues)
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.600\nWelcome to the show.\n")
    assert "00:00:00,000 --> 00:00:01,600" in to_srt(cues)


def test_caption_text_cannot_inject_webvtt_markup():
    cues = cues_from_words([Word("<b>a-->b</b>", 0.0, 1.0)], 1.0)
    assert "<b>" not in to_webvtt(cues) and "-->b" not in to_webvtt(cues).split("\n", 3)[3]


def test_text_is_normalised_to_what_the_english_voice_reads():
    spoken = speakable("“Smart” quotes — and 100% of caf\u00e9 & \u4f60\u597d friends…")
    assert spoken.text == '"Smart" quotes, and 100 percent of caf\u00e9 and friends...'
    assert spoken.dropped_words == 1


@pytest.mark.parametrize(
    "script",
    [
        "\u4f60\u597d\u4e16\u754c\u3002",
        "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440",
        "\U0001f600 \u2764",
    ],
)
def test_a_script_with_nothing_speakable_is_refused_with_a_catalogued_code(script):
    with pytest.raises(VidsynthError) as refused:
        speakable(script)
    assert refused.value.code == "SCRIPT_NOT_SPEAKABLE"
