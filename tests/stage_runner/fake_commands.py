"""Fake external model commands the tests write: they behave like XTTS/SadTalker would
(print tqdm bars, write the output) or misbehave (hang, crash, write garbage)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

BEHAVIOURS = ("ok", "hang", "crash", "garbage", "spawn_and_hang")

SCRIPT = textwrap.dedent(
    """
    import os, shutil, subprocess, sys, time
    behaviour, source, out = sys.argv[1], sys.argv[2], sys.argv[3]
    pid_file = out + ".pids"
    with open(pid_file, "w") as handle:
        handle.write(str(os.getpid()))
    for pct in (0, 25, 50, 75, 100):
        sys.stderr.write(f"\\rInference: {pct:3d}%|{'#' * (pct // 10):<10}| {pct}/100 [00:01<00:01]")
        sys.stderr.flush()
        time.sleep(0.02)
    sys.stderr.write("\\n")
    if behaviour == "hang":
        time.sleep(600)
    if behaviour == "spawn_and_hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(pid_file, "a") as handle:
            handle.write(" " + str(child.pid))
        time.sleep(600)
    if behaviour == "crash":
        print("Traceback (most recent call last): RuntimeError: CUDA out of memory", file=sys.stderr)
        sys.exit(3)
    if behaviour == "garbage":
        with open(out, "wb") as handle:
            handle.write(b"this is not audio at all" * 100)
        sys.exit(0)
    shutil.copyfile(source, out)
    """
)


def write_fake_command(directory: Path) -> Path:
    path = directory / "fake_model.py"
    path.write_text(SCRIPT)
    return path


def backends_toml(directory: Path, behaviour: str, source_wav: Path, timeout: float = 30.0) -> Path:
    """A backends file whose voice backend is the fake command with `behaviour`."""
    script = write_fake_command(directory)
    path = directory / f"backends-{behaviour}.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [backends.fake-xtts]
            stage = "voice"
            interpreter = "{sys.executable}"
            argv = ["{script}", "{behaviour}", "{source_wav}", "{{out}}", "--text", "{{text}}"]
            output = "{{work_dir}}/voice.wav"
            output_format = "wav"
            timeout_seconds = {timeout}
            """
        )
    )
    return path
