"""Storage adapters shared by services."""
