"""The reallocation engine: arrays in, a verified integer allocation out.

Pure core (no I/O, no gRPC). The flow of data is one way::

    deals table + capacity + policy --bounds--> AllocationProblem --solve--> AllocationResult

`solve` picks the exact min-cost-flow path when the constraints form a network and the
general LP path (GLOP dual simplex) otherwise; every plan is verified in integers before it
is returned. When the constraints contradict each other, `diagnose` names the bounds that must
give way and by how little, and `solve_or_relax` rejects or solves the relaxed problem.
"""

from reallocator.core.engine.bounds import (
    BoundsReport,
    BuiltProblem,
    build_from_snapshot,
    build_problem,
)
from reallocator.core.engine.diagnosis import (
    Diagnosis,
    RelaxationWeights,
    Violation,
    ViolationKind,
    diagnose,
    marginal_check,
    solve_or_relax,
)
from reallocator.core.engine.errors import (
    Conflict,
    InfeasibleProblem,
    NoFeasiblePlan,
    PlanVerificationError,
)
from reallocator.core.engine.forecast import ForecastInputs, forecast_capacity
from reallocator.core.engine.problem import AllocationProblem
from reallocator.core.engine.result import (
    AllocationResult,
    Binding,
    LpDuals,
    ObjectiveParts,
    SolvePath,
    SolveStatus,
    Timings,
)
from reallocator.core.engine.solve import solve
from reallocator.core.engine.verify import verify_allocation

__all__ = [
    "AllocationProblem",
    "AllocationResult",
    "Binding",
    "BoundsReport",
    "BuiltProblem",
    "Conflict",
    "Diagnosis",
    "ForecastInputs",
    "InfeasibleProblem",
    "LpDuals",
    "NoFeasiblePlan",
    "ObjectiveParts",
    "PlanVerificationError",
    "RelaxationWeights",
    "SolvePath",
    "SolveStatus",
    "Timings",
    "Violation",
    "ViolationKind",
    "build_from_snapshot",
    "build_problem",
    "diagnose",
    "forecast_capacity",
    "marginal_check",
    "solve",
    "solve_or_relax",
    "verify_allocation",
]
