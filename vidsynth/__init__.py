"""vidsynth: talking-head video mesh. `vidsynth.v1` holds generated protobuf stubs."""
