"""siprouter.transport."""
