"""decodelab's widgets, one per file."""
