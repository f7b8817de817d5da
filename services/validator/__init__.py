"""ValidatorService: see DESIGN.md."""
