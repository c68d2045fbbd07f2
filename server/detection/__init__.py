"""The detection engine: pure, synchronous scoring of transactions in event time."""

from server.detection.detector import Detector
from server.detection.features import FEATURES, Featurizer
from server.detection.rules import RulesError, RuleSet, load_rules
from server.detection.verdict import Decision, Reason, Scored, Severity, Verdict

__all__ = [
    "FEATURES",
    "Decision",
    "Detector",
    "Featurizer",
    "Reason",
    "RuleSet",
    "RulesError",
    "Scored",
    "Severity",
    "Verdict",
    "load_rules",
]
