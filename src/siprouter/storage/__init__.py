"""siprouter.storage."""
