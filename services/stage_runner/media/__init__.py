"""Built-in media backends: real speech, face crop, animation, enhancement and assembly.

Each module exposes small async functions that the stage runner wraps as backends. They
run ffmpeg and espeak-ng as asyncio subprocesses (never a shell) and keep numpy/OpenCV
work off the event loop. Failures raise `VidsynthError("STAGE_FAILED" | "STAGE_OUTPUT_INVALID")`.
"""
