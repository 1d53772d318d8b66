"""stackaudit: the production audit of a self-hosted Docker Compose server, from the live system."""

__version__ = "0.1.0"
