"""The process: config, store, outbox, MQTT, the command line, and the one loop that acts."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("sekisho")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
