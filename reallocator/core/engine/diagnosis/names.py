"""The stable names of the bounds a diagnosis moves (``seller/7/min_total``): one vocabulary
from the engine's codes to the error details a caller reads, and back (`parse_constraint`)."""

from __future__ import annotations

import re
from enum import StrEnum


class ViolationKind(StrEnum):
    SELLER_MIN = "seller_min"
    SELLER_MAX = "seller_max"
    CHANNEL_MIN = "channel_min"
    CHANNEL_MAX = "channel_max"
    DEAL_MIN = "deal_min"
    DEAL_MAX = "deal_max"
    MONEY_CAP = "money_cap"
    TOTAL = "total"  # never relaxed by diagnose; marginal_check can move it


TEMPLATE: dict[ViolationKind, str] = {
    ViolationKind.SELLER_MIN: "seller/{}/min_total",
    ViolationKind.SELLER_MAX: "seller/{}/max_total",
    ViolationKind.CHANNEL_MIN: "channel/{}/min_total",
    ViolationKind.CHANNEL_MAX: "channel/{}/max_total",
    ViolationKind.DEAL_MIN: "deal/{}/min_allocation",
    ViolationKind.DEAL_MAX: "deal/{}/max_allocation",
    ViolationKind.MONEY_CAP: "money_cap",
    ViolationKind.TOTAL: "total",
}
LOWERED = frozenset({ViolationKind.SELLER_MIN, ViolationKind.CHANNEL_MIN, ViolationKind.DEAL_MIN})
WORDS: dict[ViolationKind, tuple[str, str]] = {
    ViolationKind.SELLER_MIN: ("seller", "minimum"),
    ViolationKind.SELLER_MAX: ("seller", "maximum"),
    ViolationKind.CHANNEL_MIN: ("channel", "minimum"),
    ViolationKind.CHANNEL_MAX: ("channel", "maximum"),
    ViolationKind.DEAL_MIN: ("deal", "minimum allocation"),
    ViolationKind.DEAL_MAX: ("deal", "maximum allocation"),
}
_NAME = re.compile(
    r"^(seller|channel|deal)/(\d+)/(min_total|max_total|min_allocation|max_allocation)$"
)
_PARSE: dict[tuple[str, str], ViolationKind] = {
    ("seller", "min_total"): ViolationKind.SELLER_MIN,
    ("seller", "max_total"): ViolationKind.SELLER_MAX,
    ("channel", "min_total"): ViolationKind.CHANNEL_MIN,
    ("channel", "max_total"): ViolationKind.CHANNEL_MAX,
    ("deal", "min_allocation"): ViolationKind.DEAL_MIN,
    ("deal", "max_allocation"): ViolationKind.DEAL_MAX,
}


def parse_constraint(name: str) -> tuple[ViolationKind, int]:
    """`seller/3/max_total` -> (SELLER_MAX, 3); also `money_cap` and `total`."""
    if name == "money_cap":
        return ViolationKind.MONEY_CAP, -1
    if name == "total":
        return ViolationKind.TOTAL, -1
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"not a constraint name: {name!r}")
    entity, index, bound = match.groups()
    return _PARSE[(entity, bound)], int(index)
