"""fraudwatch: real-time fraud detection with a live analyst dashboard."""

__version__ = "0.1.0"
