"""The mesh-only gRPC API (package vidsynth.internal.v1)."""
