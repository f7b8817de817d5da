"""SessionService: see DESIGN.md."""
