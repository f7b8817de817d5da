"""Generated from protos/vidsynth/v1 by scripts/gen_protos.py."""
