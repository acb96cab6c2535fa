"""The installed distribution's version, read once from its metadata (as Equinox does)."""

import importlib.metadata

__version__ = importlib.metadata.version("shapesafe")
