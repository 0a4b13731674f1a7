"""Amounts for people: micros as currency, other budget units as counts."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from reallocator.core.figures import UNIT_NAMES, amount_texts, rate_texts
from reallocator.core.model import BudgetType


def amount(value: float, budget_type: BudgetType, currency: str) -> str:
    """One amount in the budget unit: '1,234.56 USD' for SPEND, '12,345 impressions' else."""
    if not math.isfinite(value):
        return "n/a"
    if budget_type is BudgetType.SPEND:
        return money(value, currency)
    return f"{value:,.0f} {UNIT_NAMES[budget_type]}"


def money(micros: float, currency: str) -> str:
    return f"{micros / 1e6:,.2f} {currency}"


def amounts(
    values: npt.NDArray[np.generic] | Sequence[float], budget_type: BudgetType, currency: str
) -> list[str]:
    """Many amounts at once, as `amount` writes each (`figures.amount_texts`: f-strings for a
    few, a column at a time for many)."""
    return amount_texts(values, budget_type, currency)


def rates(
    values: npt.NDArray[np.generic] | Sequence[float], budget_type: BudgetType, currency: str
) -> list[str]:
    """Many rates at once, as `rate` writes each."""
    return rate_texts(values, budget_type, currency)


def where(
    render: Callable[[npt.NDArray[np.generic], BudgetType, str], list[str]],
    values: npt.NDArray[np.generic],
    used: npt.NDArray[np.bool_],
    budget_type: BudgetType,
    currency: str,
) -> list[str]:
    """`render` (amounts or rates) of the `used` values only, "" elsewhere: a sentence shows a
    figure only in some of its forms (the step limit only where it stops a deal, the new
    allocation only where it moves), and formatting, not joining, is what a sentence costs."""
    used = np.asarray(used, dtype=bool)
    if used.all():
        return render(values, budget_type, currency)
    out = np.full(used.shape, "", dtype=object)
    picked = np.flatnonzero(used)
    if picked.size:
        out[picked] = np.asarray(
            render(np.asarray(values)[picked], budget_type, currency), dtype=object
        )
    texts: list[str] = out.tolist()
    return texts


def rate(value: float, budget_type: BudgetType, currency: str) -> str:
    """A rate per (opportunity) hour in the budget unit: '40.00 USD/h', '1,250.0 clicks/h'."""
    if not math.isfinite(value):
        return "n/a"
    if budget_type is BudgetType.SPEND:
        return f"{value / 1e6:,.2f} {currency}/h"
    return f"{value:,.1f} {UNIT_NAMES[budget_type]}/h"


def signed(value: float, budget_type: BudgetType, currency: str) -> str:
    sign = "+" if value > 0 else "-" if value < 0 else "±"
    return sign + amount(abs(value), budget_type, currency)
