"""When the constraints cannot all hold: which ones give way, and by how little.

`diagnose(problem, weights)` finds the smallest relaxation of the problem's bounds that makes it
feasible, names every bound it moves and builds the relaxed problem, so a caller can reject the
request with an explanation or `solve` the relaxed problem for the closest plan
(`solve_or_relax` does either).

What may move, and what it costs per budget unit (`RelaxationWeights`, from the policy):

    seller / channel minimum  (lowered)     group            default   1
    seller / channel maximum  (raised)      group * 1.0001             1.0001
    deal minimum, lb_d        (lowered)     commitment                10
    deal maximum, ub_d        (raised)      limit                    100
    money cap                 (raised)      money_cap       default: never
    the budget (total)                                               never

"Smallest" means minimal in this weighted sum: a relaxation that costs less under the weights
does not exist, but several relaxations may tie (e.g. which of two sellers' minimums gives way
when their sum is above the budget) and the one returned is one of them, chosen
deterministically. Maximums cost 1.0001x their class weight so that at equal weight a minimum
(a goal) gives way before a maximum (a cap); the weighted sum minimised is the one with that
premium. Deal minimums lb_d come from commitments, locks and step limits and deal maximums from
caps, capacity and step limits (bounds.py): the names say which bound moves, the caller's
BoundsReport says why it was there.

Two steps, cheapest first:

1. Sum checks (the necessary conditions of feasibility.py, per group and against the budget),
   each turned into the relaxation it forces: a group's interval [min, max] must meet
   [sum of its deals' lb, min(sum of its deals' ub, total)], and the minimums of one grouping
   must sum to at most the total (the largest minimums give way first, ties to the lower code).
   When these relaxations alone make the problem feasible (checked exactly, see below), they
   are minimal whenever deal bounds cost at least twice a group bound (the default
   1/10/100): a deal bound sits in one seller's and one channel's sums, so moving it can
   replace at most two units of group relaxation, and each side's forced relaxation is
   1-Lipschitz in every deal bound. Otherwise, or when the
   conflict involves deal commitments against the budget or the money cap, step 2 decides.
2. Elastic model: every relaxable bound gets a non-negative slack priced by the weights; the
   budget and (unless weighted) the money cap stay hard; the weighted slack is minimised.
   Deals of one (channel, seller) pair are interchangeable here (same rows, same weights), so
   the model runs on pairs (a few thousand columns whatever the deal count), and without a
   money cap it is a network: a min-cost flow (`elastic_flow`) solves it exactly in integers
   (weights scaled to integer costs at 2**30 resolution). A pair's lowered commitment is then
   taken from its deals with the largest lb first (fewest deals named, ties to the lower
   index); a raised maximum goes to its deal with the largest ub.
   With a money cap the flow's answer is a relaxation of the priced problem: if it meets the
   cap it is optimal (and it does whenever the cap is not part of the conflict); otherwise an
   elastic LP over deals with the money row decides (ModelBuilder from sparse arrays, GLOP
   dual simplex, `elastic_lp`). Its slacks are rounded up to integers (values within 1e-6 of an
   integer are noise and snapped) and the relaxed problem is re-checked; if rounding left it
   infeasible, the slacks are rounded up plainly, then widened by one unit, then by 1e-6 of
   the total (GLOP's feasibility tolerance is relative), each attempt noted. The LP also
   serves pairs when the total is too large for int64 flow sums.
   Why not the LP everywhere: GLOP's primal tolerance (1e-8, on the scaled model) lets a hard
   row such as the budget be overrun by a few units on large amounts: with a total of 2**31
   units (about $2,000 in micros) a needed relaxation of 7 units came back as 0. The flow is
   exact.

Feasibility is always re-checked in integers (`is_feasible`): the max deliverable flow, and
with a money cap the least-money flow against the cap.

Amounts are int64 budget units (micros of money for the money cap), like the problem's.
"""

from reallocator.core.engine.diagnosis.duals import marginal_check, relax_one
from reallocator.core.engine.diagnosis.names import ViolationKind, parse_constraint
from reallocator.core.engine.diagnosis.outcome import (
    MAX_PREMIUM,
    Diagnosis,
    RelaxationWeights,
    Violation,
)
from reallocator.core.engine.diagnosis.relaxation import is_feasible
from reallocator.core.engine.diagnosis.search import diagnose, solve_or_relax

__all__ = [
    "MAX_PREMIUM",
    "Diagnosis",
    "RelaxationWeights",
    "Violation",
    "ViolationKind",
    "diagnose",
    "is_feasible",
    "marginal_check",
    "parse_constraint",
    "relax_one",
    "solve_or_relax",
]
