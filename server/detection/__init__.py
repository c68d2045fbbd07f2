"""The detection engine: pure, synchronous scoring of transactions in event time."""

from server.detection.detector import Detector
from server.detection.rules import RuleParams
from server.detection.verdict import Decision, Reason, Scored, Severity, Verdict

__all__ = ["Decision", "Detector", "Reason", "RuleParams", "Scored", "Severity", "Verdict"]
