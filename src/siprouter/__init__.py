"""siprouter — a SIP proxy, registrar and location server in Python."""

__version__ = "0.1.0"
