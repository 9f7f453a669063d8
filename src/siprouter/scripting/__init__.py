"""siprouter.scripting."""
