"""siprouter.management."""
