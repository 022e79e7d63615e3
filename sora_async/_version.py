"""The package's version, in a module of its own so that any module can read it without
importing the package (and without importlib.metadata, which costs start-up time)."""

__version__ = "0.1.0"
