"""Step 1, cheapest first: the relaxations the necessary sum conditions force (package
docstring, step 1), minimal on their own when deal bounds cost at least twice a group bound."""

from __future__ import annotations

import numpy as np

from reallocator.core.engine.diagnosis.outcome import RelaxationWeights
from reallocator.core.engine.diagnosis.relaxation import Relaxation
from reallocator.core.engine.errors import Conflict
from reallocator.core.engine.problem import (
    NO_MAX,
    AllocationProblem,
    CodeArray,
    IntArray,
    capped_group_sum,
)


def _side(
    codes: CodeArray,
    n: int,
    lo: IntArray,
    hi: IntArray,
    p: AllocationProblem,
) -> tuple[IntArray, IntArray]:
    """Forced relaxation of one grouping's (min, max): the interval must meet
    [sum lb, min(sum ub, total)], then the minimums must fit the total together."""
    total = p.total
    lb_sum = capped_group_sum(p.lb, codes, n, NO_MAX // 2)
    ub_sum = capped_group_sum(p.ub_capped, codes, n, total)
    new_max = np.where(hi == NO_MAX, hi, np.maximum(hi, lb_sum))
    new_min = np.minimum(np.minimum(lo, new_max), ub_sum)  # <= total
    excess = int(new_min.astype(object).sum()) - total
    if excess > 0:  # the largest minimums give way first, ties to the lower code
        order = np.lexsort((np.arange(n), -new_min))
        mins = new_min[order].astype(object)
        before = np.cumsum(mins) - mins
        cut = np.minimum(mins, np.maximum(excess - before, 0)).astype(np.int64)
        new_min[order] -= cut
    return lo - new_min, new_max - hi


def sum_checks(
    p: AllocationProblem, conflicts: tuple[Conflict, ...], w: RelaxationWeights
) -> Relaxation | None:
    if not conflicts or not w.cheap_is_minimal:
        return None
    if any(c.kind.startswith("deal_minimums_above") for c in conflicts):
        return None  # commitments against the budget / money cap: which deals is the LP's call
    r = Relaxation.zeros(p)
    r.seller_min, r.seller_max = _side(p.seller, p.n_sellers, p.seller_min, p.seller_max, p)
    r.channel_min, r.channel_max = _side(p.channel, p.n_channels, p.channel_min, p.channel_max, p)
    return r
