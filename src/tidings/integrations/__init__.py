"""Integrations with frameworks: ``tidings.integrations.fastapi``."""
