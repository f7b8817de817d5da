"""Script text helpers: the words a job will speak and how long they take."""

from __future__ import annotations

import re

from vidsynth.v1 import stage_runner_pb2

_WORD = re.compile(r"[\w'\u2019-]+")
DEFAULT_PROMPT_MINUTES = 1.0


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def speech_seconds_for_text(text: str, words_per_minute: float) -> float:
    return max(1.0, word_count(text) * 60.0 / words_per_minute)


def expected_speech_seconds(spec: stage_runner_pb2.JobSpec, words_per_minute: float) -> float:
    """Speech length before the script exists: from the text, or the prompt's duration."""
    if spec.WhichOneof("script") == "script_text":
        return speech_seconds_for_text(spec.script_text, words_per_minute)
    minutes = spec.script_prompt.duration_minutes or DEFAULT_PROMPT_MINUTES
    return max(1.0, minutes * 60.0)


def simulated_script(prompt: stage_runner_pb2.ScriptPrompt, words_per_minute: float) -> str:
    """A plain stand-in script of about the requested length (simulation mode only)."""
    topic = prompt.topic.strip() or "our topic"
    target_words = int((prompt.duration_minutes or DEFAULT_PROMPT_MINUTES) * words_per_minute)
    sentences = [
        f"Welcome. Today we talk about {topic}.",
        f"This is a simulated script about {topic}, written without a language model.",
        "Each sentence stands in for the real script so the rest of the pipeline can run.",
    ]
    words: list[str] = []
    index = 0
    while len(words) < max(target_words, 5):
        words.extend(sentences[index % len(sentences)].split())
        index += 1
    return " ".join(words)


def script_for_spec(spec: stage_runner_pb2.JobSpec, words_per_minute: float) -> str:
    if spec.WhichOneof("script") == "script_text":
        return spec.script_text.strip()
    return simulated_script(spec.script_prompt, words_per_minute)
