"""siprouter.modules."""
