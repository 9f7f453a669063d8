"""siprouter.config."""
