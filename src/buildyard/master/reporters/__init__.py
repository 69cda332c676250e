"""reporters (see DESIGN.md for its role and imports)."""
