"""siprouter.sip."""
