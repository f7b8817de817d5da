"""All built-in media stages chained directly in one process: photo + voice sample + script -> MP4.

The stage runner runs the same functions as separate, resumable stages; this direct chain is
the floor the pipeline benchmark compares against, and a quick way to render from Python.
Progress is reported stage by stage; weighing stages into one figure is the runner's job.
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
from services.stage_runner.media.progress import StageProgressCallback, for_stage
from services.stage_runner.media.speech_engine import SpeechEngine


@dataclass
class TalkingHeadResult:
    outputs: dict[str, Path]
    audio_seconds: float
    frames: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    speech: MatchedSpeech | None = None
    animation: AnimationResult | None = None


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
    on_progress: StageProgressCallback | None = None,
) -> TalkingHeadResult:
    """Render `out_dir/video.mp4`, `thumbnail.jpg`, `audio.wav` and the captions; `engine` is
    the Piper worker (None: espeak-ng); `upscale_factor` > 1 adds enhancement. `on_progress`
    hears (stage, percent of that stage, message) for voice, animate, enhance and assemble."""
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
            for_stage(on_progress, "voice"),
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
            on_progress=for_stage(on_progress, "animate"),
            landmarks_json=landmarks,
            alignment_json=alignment_json,
        )
        video = animation.path
        timings["animate"], began = time.perf_counter() - began, time.perf_counter()
        if upscale_factor > 1:
            video = await enhance(
                video, work / "enhanced.mp4", upscale_factor, for_stage(on_progress, "enhance")
            )
            timings["enhance"], began = time.perf_counter() - began, time.perf_counter()
        outputs = await assemble(
            video,
            speech.path,
            out_dir,
            for_stage(on_progress, "assemble"),
            burn_captions=captions["captions_srt"] if burn_captions else None,
        )
        timings["assemble"] = time.perf_counter() - began
        audio_out = out_dir / "audio.wav"
        await asyncio.to_thread(shutil.copyfile, speech.path, audio_out)
        outputs.update(captions, audio=audio_out)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    return TalkingHeadResult(outputs, speech.duration_seconds, animation.frames, timings, speech, animation)
