"""Generated from protos/vidsynth/internal/v1 by scripts/gen_protos.py."""
