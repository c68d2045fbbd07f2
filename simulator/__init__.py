"""A seeded transaction simulator with labelled fraud, for the server or as its own client."""

from simulator.generator import Labeled, Simulator, ndjson

__all__ = ["Labeled", "Simulator", "ndjson"]
