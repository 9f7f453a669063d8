"""siprouter.dialog."""
