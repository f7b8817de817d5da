from __future__ import annotations

from services.stage_runner.media.chunking import clean_speakable, split_script


def test_clean_speakable_strips_markup_urls_directions_and_emoji():
    raw = (
        "# Welcome!\n"
        "**Narrator:** Hello *there* 👋, see [our site](https://example.com) or www.example.org now\n"
        "- first point\n"
        "2) second point\n"
        "[upbeat music] (pause) Thanks for `watching`"
    )
    text = clean_speakable(raw)
    assert (
        text == "Welcome! Hello there, see our site or now. first point. second point. Thanks for watching."
    )
    for gone in ("http", "www", "*", "#", "`", "👋", "music", "pause", "Narrator", "[", "]"):
        assert gone not in text
    for kept in ("Welcome!", "Hello there", "our site", "first point.", "second point.", "watching"):
        assert kept in text


def test_split_script_keeps_sentences_whole_and_chunks_near_the_target():
    sentence = "This sentence has exactly eight words in it."
    text = " ".join([sentence] * 20)  # 160 words
    chunks = split_script(text, seconds_per_chunk=10.0, words_per_minute=150)  # 25 words per chunk
    assert " ".join(chunks) == text
    for chunk in chunks:
        assert chunk.endswith(".")
        assert len(chunk.split()) <= 25
        assert chunk.count(sentence) == len(chunk.split()) // 8
    assert len(chunks) == 7  # three sentences (24 words) per chunk


def test_a_sentence_longer_than_a_chunk_is_split_at_clauses_then_words():
    long_sentence = "One two three four five, six seven eight nine ten, " + " ".join(["word"] * 30) + "."
    chunks = split_script(long_sentence, seconds_per_chunk=4.0, words_per_minute=150)  # 10 words
    assert all(len(c.split()) <= 10 for c in chunks)
    assert " ".join(chunks).split() == long_sentence.split()
    assert chunks[0] == "One two three four five, six seven eight nine ten,"


def test_empty_and_markup_only_scripts_have_no_chunks():
    assert split_script("") == []
    assert split_script("  \n **  ** \n ## ") == []
