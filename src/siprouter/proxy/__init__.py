"""siprouter.proxy."""
