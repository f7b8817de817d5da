"""A finished job's outputs: their names, file names and content types, and where they live.

The stage runner writes them (services/stage_runner/checkpoints.py) and serves them over gRPC;
the gateway serves the same files over HTTP. Both read this one table, so a download never
depends on the runner's code (or the media stack it imports).
"""

from __future__ import annotations

from pathlib import Path

from libs.common.session_paths import session_paths

# Output name -> (file name in <session>/output/<job_id>/, content type).
OUTPUT_FILES: dict[str, tuple[str, str]] = {
    "video": ("video.mp4", "video/mp4"),
    "thumbnail": ("thumbnail.jpg", "image/jpeg"),
    "audio": ("audio.wav", "audio/wav"),
    "script": ("script.txt", "text/plain; charset=utf-8"),
    # From the built-in voice (its alignments time the words).
    "captions": ("captions.vtt", "text/vtt; charset=utf-8"),
    "captions_srt": ("captions.srt", "application/x-subrip; charset=utf-8"),
}


def output_path(sessions_dir: Path, session_id: str, job_id: str, name: str) -> Path | None:
    """Where a finished job's named output lives; None for a name that is not an output.
    INVALID_ID for a malformed session id, before anything touches the filesystem."""
    entry = OUTPUT_FILES.get(name)
    if entry is None:
        return None
    return session_paths(sessions_dir, session_id).output / job_id / entry[0]
