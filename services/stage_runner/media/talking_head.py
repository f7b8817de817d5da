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

from services.stage_runner.media.animate import animate, expression_scale_for
from services.stage_runner.media.assemble import assemble
from services.stage_runner.media.enhance import enhance
from services.stage_runner.media.face import crop_face
from services.stage_runner.media.progress import ProgressCallback, scaled
from services.stage_runner.media.voice import synthesize

# Share of the overall progress each stage takes (roughly its share of the work).
_WEIGHTS = {"voice": 20.0, "face": 2.0, "animate": 50.0, "enhance": 18.0, "assemble": 10.0}


@dataclass
class TalkingHeadResult:
    outputs: dict[str, Path]
    audio_seconds: float
    frames: int
    stage_seconds: dict[str, float] = field(default_factory=dict)


async def render_talking_head(
    photo: Path,
    voice_sample: Path,
    script_text: str,
    out_dir: Path,
    *,
    size: int = 256,
    fps: int = 25,
    emotion: str = "",
    tone: str = "",
    upscale_factor: int = 0,
    seconds_per_chunk: float = 20.0,
    on_progress: ProgressCallback | None = None,
) -> TalkingHeadResult:
    """Render `out_dir/video.mp4` and `out_dir/thumbnail.jpg`; `upscale_factor` > 1 adds enhancement."""
    weights = dict(_WEIGHTS)
    if upscale_factor <= 1:
        weights.pop("enhance")
    total = sum(weights.values())
    bounds: dict[str, tuple[float, float]] = {}
    start = 0.0
    for stage, weight in weights.items():
        bounds[stage] = (100.0 * start / total, 100.0 * (start + weight) / total)
        start += weight
    timings: dict[str, float] = {}
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".talking-head-", dir=out_dir.parent))
    try:
        began = time.perf_counter()
        speech = await synthesize(
            script_text,
            voice_sample,
            work / "speech.wav",
            scaled(on_progress, *bounds["voice"]),
            seconds_per_chunk=seconds_per_chunk,
        )
        timings["voice"], began = time.perf_counter() - began, time.perf_counter()
        await crop_face(photo, work / "face.png", size=size)
        timings["face"], began = time.perf_counter() - began, time.perf_counter()
        animation = await animate(
            work / "face.png",
            speech.path,
            work / "animation.mp4",
            fps=fps,
            expression_scale=expression_scale_for(emotion, tone),
            on_progress=scaled(on_progress, *bounds["animate"]),
        )
        video = animation.path
        timings["animate"], began = time.perf_counter() - began, time.perf_counter()
        if upscale_factor > 1:
            video = await enhance(
                video, work / "enhanced.mp4", upscale_factor, scaled(on_progress, *bounds["enhance"])
            )
            timings["enhance"], began = time.perf_counter() - began, time.perf_counter()
        outputs = await assemble(video, speech.path, out_dir, scaled(on_progress, *bounds["assemble"]))
        timings["assemble"] = time.perf_counter() - began
        audio_out = out_dir / "audio.wav"
        await asyncio.to_thread(shutil.copyfile, speech.path, audio_out)
        outputs["audio"] = audio_out
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    return TalkingHeadResult(outputs, speech.duration_seconds, animation.frames, timings)
