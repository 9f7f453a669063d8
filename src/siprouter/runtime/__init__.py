"""siprouter.runtime."""
