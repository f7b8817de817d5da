#!/usr/bin/env bash
# The main job: start the mesh and run the bundled samples through it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/vidsynth demo "$@"
