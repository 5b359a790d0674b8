"""decodelab's modal screens."""
