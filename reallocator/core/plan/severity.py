"""How much a change matters, and whether it is worth making at all.

Plans must not churn on noise: a change below `Policy.min_change` is not worth making or asking
for, and every change that is made carries a severity tier so callers can auto-apply the small
ones (`Policy.auto_apply_up_to`) and escalate the big ones. Tiers are relative to what the deal
has now (`SeverityTiers`: share of the current allocation), so a 5,000 move is minor on a
1,000,000 deal and critical on a 10,000 one; premium deals are at least MATERIAL because a
mistake there costs a relationship, not just budget.

All functions are vectorised over deals and pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from pandas.api.types import infer_dtype

from reallocator.core.model import Policy, Severity, SeverityTiers, as_units, select

IntArray: TypeAlias = npt.NDArray[np.int64]
FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
SeverityArray: TypeAlias = npt.NDArray[np.object_]
"""An object array of `Severity` members."""

SEVERITY_ORDER: tuple[Severity, ...] = (Severity.MINOR, Severity.MATERIAL, Severity.CRITICAL)
"""Least to most severe; a severity's rank is its index here."""

SEVERITY_RANK: dict[Severity, int] = {s: i for i, s in enumerate(SEVERITY_ORDER)}

_BY_RANK = np.array(SEVERITY_ORDER, dtype=object)


def relative_change(delta: npt.ArrayLike, current: npt.ArrayLike) -> FloatArray:
    """|delta| / max(current, 1): the change as a share of what the deal has now.

    The floor of one unit keeps a change on an empty deal finite (and large), rather than
    dividing by zero.
    """
    d = np.abs(np.asarray(delta, dtype=np.float64))
    c = np.maximum(np.asarray(current, dtype=np.float64), 1.0)
    return np.asarray(d / c, dtype=np.float64)


def change_severity(
    delta: npt.ArrayLike,
    current: npt.ArrayLike,
    premium: npt.ArrayLike,
    tiers: SeverityTiers,
) -> SeverityArray:
    """Severity of each change: CRITICAL from `tiers.critical`, MATERIAL from `tiers.material`.

    Thresholds are inclusive ("from which a change is material"). Premium deals are at least
    MATERIAL. A zero change is MINOR whatever the deal: there is nothing to escalate. Monotone
    in |delta| for a fixed current allocation and premium flag.
    """
    out: SeverityArray = _BY_RANK[change_ranks(delta, current, premium, tiers)]
    return out


def change_ranks(
    delta: npt.ArrayLike,
    current: npt.ArrayLike,
    premium: npt.ArrayLike,
    tiers: SeverityTiers,
) -> IntArray:
    """`change_severity` as ranks (SEVERITY_RANK): for a caller that only wants the most
    severe, without a Severity per deal to look up again (`severity_rank`)."""
    d = np.asarray(delta)
    rel = relative_change(d, current)
    changed = d != 0
    prem = np.broadcast_to(np.asarray(premium, dtype=bool), rel.shape)
    rank: IntArray = select(
        [changed & (rel >= tiers.critical), changed & ((rel >= tiers.material) | prem)],
        [_CRITICAL, _MATERIAL],
        _MINOR,
    )
    return rank


_MINOR, _MATERIAL, _CRITICAL = (SEVERITY_RANK[s] for s in SEVERITY_ORDER)


def severity_rank(severity: npt.ArrayLike) -> IntArray:
    """Rank of each severity (MINOR 0, MATERIAL 1, CRITICAL 2; -1 for "" / None / unknown)."""
    values = np.asarray(severity, dtype=object).ravel()
    lookup: dict[Any, int] = {str(s): r for s, r in SEVERITY_RANK.items()}
    ranks = np.fromiter((lookup.get(str(v), -1) for v in values), dtype=np.int64, count=values.size)
    return ranks.reshape(np.shape(severity))


def max_severity(severity: npt.ArrayLike) -> Severity | None:
    """The most severe of `severity` (None when empty or all unknown): Plan.max_severity."""
    ranks = severity_rank(severity)
    if ranks.size == 0 or int(ranks.max()) < 0:
        return None
    return SEVERITY_ORDER[int(ranks.max())]


def most_severe(ranks: IntArray, others: Iterable[Severity]) -> Severity | None:
    """The most severe of the changes ranked `ranks` (`change_ranks`) and of `others`: what
    `max_severity` says of them all together, without a lookup per value."""
    rank = max(int(ranks.max(initial=-1)), *(SEVERITY_RANK.get(s, -1) for s in others), -1)
    return SEVERITY_ORDER[rank] if rank >= 0 else None


def change_size(new: IntArray, old: IntArray, projected: FloatArray) -> IntArray:
    """How large a deal's change is for whoever paces it: the larger of the move and the gap
    between the new allocation and what the deal would deliver at its current pace
    (`projected`, budget units; NaN read as 0): a deal off its pace needs telling even when its
    allocation stays. The seller requests and the schedules size a change alike."""
    out: IntArray = np.maximum(np.abs(new - old), np.abs(new - as_units(projected)))
    return out


def worth_changing(delta: npt.ArrayLike, min_change: int) -> BoolArray:
    """Whether each change is worth making: nonzero and |delta| >= `min_change` budget units.

    `min_change` = 0 (the default policy) means any nonzero change is worth it.
    """
    d = np.abs(np.asarray(delta, dtype=np.int64))
    return np.asarray((d > 0) & (d >= int(min_change)), dtype=bool)


def auto_applicable(severity: npt.ArrayLike, policy: Policy) -> BoolArray:
    """Whether each change may be applied without review under `policy.auto_apply_up_to`.

    "" means nothing is auto-applied; "MATERIAL" means MINOR and MATERIAL changes are.
    """
    ranks = severity_rank(severity)
    limit = policy.auto_apply_up_to
    if not limit:
        return np.zeros(ranks.shape, dtype=bool)
    ceiling = SEVERITY_RANK[Severity(limit)]
    return np.asarray((ranks >= 0) & (ranks <= ceiling), dtype=bool)


def _frozen(array: np.ndarray) -> bool:
    """Whether no one can write `array` through numpy: read-only down to the array that owns
    its memory (a plan's shared read, `model.labels_of`). Such a column is kept as it is, not
    copied (~0.6 ms a column of 100k str objects, three columns a plan's schedules)."""
    found: Any = array
    while isinstance(found, np.ndarray):
        if found.flags.writeable:
            return False
        found = found.base
    return found is None


def coerce_columns(obj: Any, dtypes: dict[str, Any]) -> None:
    """Per-deal array fields of a frozen input dataclass to their dtypes, one per deal (checked):
    callers pass lists, Series or arrays and the derivations index them as numpy."""
    n = len(obj.deal_id)
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name not in dtypes or value is None:
            continue
        array = np.asarray(value, dtype=dtypes[f.name])
        # Text as plain str; a column that is already all str (the usual case: 5 columns of
        # 100k deals cost ~40 ms to convert one by one) is kept as it is.
        if dtypes[f.name] is object:
            flat = array.ravel()
            if infer_dtype(flat, skipna=False) not in ("string", "empty"):  # one C pass
                array = np.asarray([str(v) for v in flat], dtype=object)
            elif not _frozen(flat):
                array = flat.copy()  # a new array, as the conversion made
        if array.shape != (n,):
            name = type(obj).__name__
            raise ValueError(f"{name}.{f.name} has shape {array.shape}, want ({n},)")
        object.__setattr__(obj, f.name, array)
