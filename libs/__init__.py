"""Code shared by more than one vidsynth service."""
