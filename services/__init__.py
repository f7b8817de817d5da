"""Services of the vidsynth mesh, one package each."""

import os

# Read by gRPC when it is imported, which every service does after this package: its
# fork handlers can crash a child forked to exec ffmpeg or espeak-ng before the exec.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
