"""Every write to accounts data goes through these functions (see DESIGN.md §1)."""
