"""siprouter.testing."""
