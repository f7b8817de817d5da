"""CleanupService: see DESIGN.md."""
