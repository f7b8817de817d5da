#!/usr/bin/env bash
# The whole test suite: set-up, lint, format check, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# pytest exits 5 when it collected no test: set -e makes that a failure too.
.venv/bin/python -m pytest "$@"
