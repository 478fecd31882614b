"""The process: config, store, outbox, MQTT, the command line, and the one loop that acts."""

__version__ = "0.1.0"
"""sekisho's version: pyproject.toml takes it from here (``[tool.setuptools.dynamic]``)."""
