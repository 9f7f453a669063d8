"""siprouter.transaction."""
