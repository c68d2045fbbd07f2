"""What the feature tests read features through: a transaction's features by attribute.

The product computes features as a plain dict (`Featurizer.values_one`, what the detector
calls); attribute access by name, and the first detector's names, are for the tests alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from server.detection.features import FEATURES, Featurizer, Value
from server.transactions import Transaction

ALIASES: dict[str, str] = {
    # Names of the first detector, kept as attributes of Features.
    "tx_1m": "account_count_1m",
    "tx_1h": "account_count_1h",
    "tiny_recent": "account_small_count_10m",
}


class Features:
    """The features of one transaction, by name; those not computed read as None.

    Attribute access works for every name in FEATURES (and the first detector's names
    `tx_1m`, `tx_1h`, `tiny_recent`).
    """

    __slots__ = ("values",)

    def __init__(self, values: dict[str, Value]) -> None:
        self.values = values

    def __getattr__(self, name: str) -> Value:
        name = ALIASES.get(name, name)
        if name not in FEATURES:
            raise AttributeError(name)
        return self.values.get(name)

    def named(self, names: Iterable[str] | None = None) -> dict[str, float | None]:
        """Every feature (or `names`, in that order) as a number or None when unknown."""
        values = self.values
        out: dict[str, float | None] = {}
        for name in FEATURES if names is None else names:
            v = values.get(name)
            out[name] = None if v is None else float(v)
        return out


def process_one(featurizer: Featurizer, tx: Transaction) -> Features:
    """Features of `tx` against the state as it stands, then `tx` learnt: the detector's
    own call (`values_one`), read by attribute."""
    return Features(featurizer.values_one(tx))
