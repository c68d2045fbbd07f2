"""The detection engine: pure, synchronous scoring of transactions in event time."""

from server.detection.verdict import Decision, Reason, Scored, Severity, Verdict

__all__ = ["Decision", "Reason", "Scored", "Severity", "Verdict"]
