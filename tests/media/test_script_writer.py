from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from libs.common.errors import VidsynthError
from services.stage_runner.media.config import MediaSettings
from services.stage_runner.script_writer import (
    ScriptPrompt,
    gemini_available,
    generate_script,
)
from tests.media.fake_gemini import answer, failure, running_fake_gemini

ROOT = Path(__file__).resolve().parents[2]
PROMPT = ScriptPrompt(
    topic="why rivers bend",
    duration_minutes=0.5,
    tone="friendly",
    emotion="curious",
    audience="teenagers",
    content_type="explainer",
)
GOOD_SCRIPT = "\n".join(
    ["# Why rivers bend", "**Host:** Have you ever wondered why rivers never run straight? 🌊"]
    + [
        f"Point {n}: water pushes on the outside of each curve and drops sand on the inside."
        for n in range(6)
    ]
)


@pytest.fixture
async def fake_gemini():
    async with running_fake_gemini() as fake:
        yield fake


def settings_for(fake, **overrides) -> MediaSettings:
    values = {
        "media_gemini_api_key": "test-gemini-key",
        "media_gemini_base_url": fake.base_url,
        "media_gemini_models": "model-a,model-b",
        "media_gemini_attempts": 2,
        "media_gemini_backoff_seconds": 0.01,
        "media_gemini_timeout_seconds": 20,
    }
    return MediaSettings(**(values | overrides))


async def test_a_script_is_generated_cleaned_and_sized(fake_gemini):
    fake_gemini.replies["model-a"] = [answer(GOOD_SCRIPT, "model-a")]
    script = await generate_script(PROMPT, settings_for(fake_gemini))
    assert script.model == "model-a"
    assert script.text.startswith("Why rivers bend. Have you ever wondered why rivers never run straight?")
    for markup in ("#", "*", "Host:", "🌊"):
        assert markup not in script.text
    assert script.word_count == len(script.text.split())
    assert script.estimated_seconds == pytest.approx(script.word_count * 60 / 150)
    # The request: one call, with the key, the target length (0.5 min x 150 wpm) and every prompt field.
    [request] = fake_gemini.requests
    assert request["api_key"] == "test-gemini-key" and request["action"] == "generateContent"
    sent = request["body"]["contents"][0]["parts"][0]["text"]
    for expected in ("about 75 words", "why rivers bend", "friendly", "curious", "teenagers", "explainer"):
        assert expected in sent
    assert "spoken words only" in request["body"]["systemInstruction"]["parts"][0]["text"]


async def test_an_overlong_answer_is_trimmed_at_a_sentence_end(fake_gemini):
    long_script = " ".join(f"This is sentence {n} of a script that goes on." for n in range(60))
    fake_gemini.replies["*"] = [answer(long_script)]
    script = await generate_script(PROMPT, settings_for(fake_gemini))
    assert script.word_count <= round(75 * 1.15)
    assert script.text.endswith("goes on.") and long_script.startswith(script.text)


async def test_429_everywhere_is_rate_limited_with_retry_after(fake_gemini):
    fake_gemini.replies["*"] = [failure(429, "RESOURCE_EXHAUSTED", retry_after=7)]
    with pytest.raises(VidsynthError) as caught:
        await generate_script(PROMPT, settings_for(fake_gemini))
    assert caught.value.code == "RATE_LIMITED"
    assert caught.value.retry_after_seconds == 7
    assert [r["model"] for r in fake_gemini.requests] == ["model-a", "model-a", "model-b", "model-b"]


async def test_500_is_retried_then_fails_as_script_generation_failed(fake_gemini):
    fake_gemini.replies["*"] = [failure(500, "INTERNAL")]
    with pytest.raises(VidsynthError) as caught:
        await generate_script(PROMPT, settings_for(fake_gemini))
    assert caught.value.code == "SCRIPT_GENERATION_FAILED"
    assert len(fake_gemini.requests) == 4


async def test_a_transient_500_is_retried_on_the_same_model(fake_gemini):
    fake_gemini.replies["model-a"] = [failure(503, "UNAVAILABLE"), answer(GOOD_SCRIPT)]
    script = await generate_script(PROMPT, settings_for(fake_gemini))
    assert script.model == "model-a" and len(fake_gemini.requests) == 2


async def test_an_empty_answer_fails_as_script_generation_failed(fake_gemini):
    fake_gemini.replies["*"] = [answer("")]
    with pytest.raises(VidsynthError) as caught:
        await generate_script(PROMPT, settings_for(fake_gemini))
    assert caught.value.code == "SCRIPT_GENERATION_FAILED"
    assert len(fake_gemini.requests) == 4


async def test_an_unknown_model_falls_back_to_the_next_one_at_once(fake_gemini):
    fake_gemini.replies["model-a"] = [failure(404, "NOT_FOUND")]
    fake_gemini.replies["model-b"] = [answer(GOOD_SCRIPT)]
    script = await generate_script(PROMPT, settings_for(fake_gemini))
    assert script.model == "model-b"
    assert [r["model"] for r in fake_gemini.requests] == ["model-a", "model-b"]


async def test_a_refused_key_fails_without_trying_other_models(fake_gemini):
    fake_gemini.replies["*"] = [failure(403, "PERMISSION_DENIED")]
    with pytest.raises(VidsynthError) as caught:
        await generate_script(PROMPT, settings_for(fake_gemini))
    assert caught.value.code == "SCRIPT_GENERATION_FAILED"
    assert len(fake_gemini.requests) == 1


async def test_an_unreachable_server_fails_as_script_generation_failed():
    from tests.support.ports import free_port

    settings = MediaSettings(
        media_gemini_api_key="k",
        media_gemini_base_url=f"http://127.0.0.1:{free_port()}/",
        media_gemini_attempts=1,
        media_gemini_models="model-a",
        media_gemini_backoff_seconds=0,
    )
    with pytest.raises(VidsynthError) as caught:
        await generate_script(PROMPT, settings)
    assert caught.value.code == "SCRIPT_GENERATION_FAILED"


async def test_without_a_key_gemini_is_unavailable_with_the_reason(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("VIDSYNTH_MEDIA_GEMINI_API_KEY", raising=False)
    settings = MediaSettings()
    assert gemini_available(settings) == (False, "GEMINI_API_KEY is not set")
    with pytest.raises(VidsynthError) as caught:
        await generate_script(PROMPT, settings)
    assert caught.value.code == "STAGE_UNAVAILABLE"
    monkeypatch.setenv("GEMINI_API_KEY", "from-env")
    assert gemini_available(MediaSettings())[0] is True


@pytest.mark.parametrize(
    ("prompt", "field"),
    [
        (ScriptPrompt(topic="  "), "script_prompt.topic"),
        (ScriptPrompt(topic="x" * 501), "script_prompt.topic"),
        (ScriptPrompt(topic="rivers", duration_minutes=0), "script_prompt.duration_minutes"),
        (ScriptPrompt(topic="rivers", duration_minutes=11), "script_prompt.duration_minutes"),
        (ScriptPrompt(topic="rivers", tone="t" * 61), "script_prompt.tone"),
    ],
)
async def test_invalid_prompts_are_refused_before_any_call(prompt, field, fake_gemini):
    with pytest.raises(VidsynthError) as caught:
        await generate_script(prompt, settings_for(fake_gemini))
    assert caught.value.code == "INVALID_ARGUMENT"
    assert [v.field for v in caught.value.field_violations] == [field]
    assert fake_gemini.requests == []


def test_a_stage_runner_without_a_gemini_key_never_loads_google_genai():
    # A fresh interpreter: this test process may already hold the SDK. The SDK's import is
    # most of a stage runner's start-up, so it waits for the first generated script.
    probe = (
        "import json, sys\n"
        "import services.stage_runner.server\n"
        "from services.stage_runner.media.config import MediaSettings\n"
        "from services.stage_runner.script_writer import _sdk, gemini_available\n"
        "available, _ = gemini_available(MediaSettings())\n"
        "loaded_before_use = 'google.genai' in sys.modules\n"
        "_sdk()\n"
        "print(json.dumps([available, loaded_before_use, 'google.genai' in sys.modules]))\n"
    )
    env = {k: v for k, v in os.environ.items() if "GEMINI" not in k}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [False, False, True]
