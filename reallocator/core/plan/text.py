"""Amounts for people: micros as currency, other budget units as counts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from reallocator.core.model import BudgetType

_UNIT_NAMES = {
    BudgetType.IMPRESSIONS: "impressions",
    BudgetType.CLICKS: "clicks",
    BudgetType.COMPLETES: "completes",
    BudgetType.REQUESTS: "requests",
}


def amount(value: float, budget_type: BudgetType, currency: str) -> str:
    """One amount in the budget unit: '1,234.56 USD' for SPEND, '12,345 impressions' else."""
    if budget_type is BudgetType.SPEND:
        return money(value, currency)
    return f"{value:,.0f} {_UNIT_NAMES[budget_type]}"


def money(micros: float, currency: str) -> str:
    return f"{micros / 1e6:,.2f} {currency}"


def amounts(
    values: npt.NDArray[np.generic] | Sequence[float], budget_type: BudgetType, currency: str
) -> list[str]:
    return [amount(float(v), budget_type, currency) for v in np.asarray(values, np.float64)]


def rate(value: float, budget_type: BudgetType, currency: str) -> str:
    """A rate per hour in the budget unit."""
    if budget_type is BudgetType.SPEND:
        return f"{value / 1e6:,.2f} {currency}/h"
    return f"{value:,.1f} {_UNIT_NAMES[budget_type]}/h"


def signed(value: float, budget_type: BudgetType, currency: str) -> str:
    sign = "+" if value > 0 else "-" if value < 0 else "±"
    return sign + amount(abs(value), budget_type, currency)
