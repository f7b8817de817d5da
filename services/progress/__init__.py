"""ProgressService: see DESIGN.md."""
