"""StageRunnerService: see DESIGN.md."""
