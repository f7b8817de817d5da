"""All built-in media stages chained directly in one process: photo + voice sample + script -> MP4.

The stage runner runs the same functions as separate, resumable stages; this direct chain is
the floor the pipeline benchmark compares against, and a quick way to render from Python.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.stage_runner.media.animate import AnimationResult, animate, expression_scale_for
from services.stage_runner.media.assemble import assemble
from services.stage_runner.media.captions import write_captions
from services.stage_runner.media.enhance import enhance
from services.stage_runner.media.face import crop_face
from services.stage_runner.media.neural_voice import MatchedSpeech, synthesize_matched
from services.stage_runner.media.progress import ProgressCallback, scaled
from services.stage_runner.media.speech_engine import SpeechEngine

# Share of the overall progress each stage takes (roughly its share of the work).
_WEIGHTS = {"voice": 35.0, "face": 2.0, "animate": 45.0, "enhance": 18.0, "assemble": 8.0}


@dataclass
class TalkingHeadResult:
    outputs: dict[str, Path]
    audio_seconds: float
    frames: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    speech: MatchedSpeech | None = None
    animation: AnimationResult | None = None


def _bounds(upscale_factor: int) -> dict[str, tuple[float, float]]:
    weights = dict(_WEIGHTS)
    if upscale_factor <= 1:
        weights.pop("enhance")
    total = sum(weights.values())
    bounds: dict[str, tuple[float, float]] = {}
    start = 0.0
    for stage, weight in weights.items():
        bounds[stage] = (100.0 * start / total, 100.0 * (start + weight) / total)
        start += weight
    return bounds


async def render_talking_head(
    photo: Path,
    voice_sample: Path,
    script_text: str,
    out_dir: Path,
    *,
    engine: SpeechEngine | None = None,
    size: int = 512,
    fps: int = 25,
    emotion: str = "",
    tone: str = "",
    upscale_factor: int = 0,
    burn_captions: bool = False,
    seconds_per_chunk: float = 20.0,
    on_progress: ProgressCallback | None = None,
) -> TalkingHeadResult:
    """Render `out_dir/video.mp4`, `thumbnail.jpg`, `audio.wav` and the captions; `engine` is
    the Piper worker (None: espeak-ng); `upscale_factor` > 1 adds enhancement."""
    bounds = _bounds(upscale_factor)
    timings: dict[str, float] = {}
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".talking-head-", dir=out_dir.parent))
    try:
        began = time.perf_counter()
        speech = await synthesize_matched(
            script_text,
            voice_sample,
            work / "speech.wav",
            engine,
            scaled(on_progress, *bounds["voice"]),
            seconds_per_chunk=seconds_per_chunk,
        )
        alignment_json = work / "alignment.json"
        await asyncio.to_thread(speech.alignment.write, alignment_json)
        captions = await asyncio.to_thread(
            write_captions, speech.alignment.words, speech.duration_seconds, out_dir
        )
        timings["voice"], began = time.perf_counter() - began, time.perf_counter()
        landmarks = work / "landmarks.json"
        await crop_face(photo, work / "face.png", size=size, landmarks_json=landmarks)
        timings["face"], began = time.perf_counter() - began, time.perf_counter()
        animation = await animate(
            work / "face.png",
            speech.path,
            work / "animation.mp4",
            fps=fps,
            expression_scale=expression_scale_for(emotion, tone),
            on_progress=scaled(on_progress, *bounds["animate"]),
            landmarks_json=landmarks,
            alignment_json=alignment_json,
        )
        video = animation.path
        timings["animate"], began = time.perf_counter() - began, time.perf_counter()
        if upscale_factor > 1:
            video = await enhance(
                video, work / "enhanced.mp4", upscale_factor, scaled(on_progress, *bounds["enhance"])
            )
            timings["enhance"], began = time.perf_counter() - began, time.perf_counter()
        outputs = await assemble(
            video,
            speech.path,
            out_dir,
            scaled(on_progress, *bounds["assemble"]),
            burn_captions=captions["captions_srt"] if burn_captions else None,
        )
        timings["assemble"] = time.perf_counter() - began
        audio_out = out_dir / "audio.wav"
        await asyncio.to_thread(shutil.copyfile, speech.path, audio_out)
        outputs.update(captions, audio=audio_out)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    return TalkingHeadResult(outputs, speech.duration_seconds, animation.frames, timings, speech, animation)
