"""slimbench: find light, efficient image classifiers for embedded systems."""

__version__ = "0.1.0"
