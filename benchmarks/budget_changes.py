"""Cost of a pacing curve with many mid-flight budget changes (lifetime and daily budgets over
60 days, changes spread evenly): it should grow about linearly with the number of changes.

    .venv/bin/python benchmarks/budget_changes.py [--counts 1000 5000 20000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from reallocator.core.model import Budget, BudgetChange, BudgetChangeBehavior, PacingSpec, Period
from reallocator.core.pacing.curves import build_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1_000, 5_000, 20_000])
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=args.days)
    budgets = (Budget(Period.LIFETIME, 10**12), Budget(Period.DAY, 10**11))
    print(f"{'changes':>8} {'behavior':>8} {'seconds':>8}")
    for n in args.counts:
        step = (end - start) / (n + 1)
        changes = tuple(
            BudgetChange(start + step * (i + 1), Period.LIFETIME, 10**9 + i, 10**9 + i + 1)
            for i in range(n)
        )
        for behavior in BudgetChangeBehavior:
            spec = PacingSpec(
                start=start,
                end=end,
                budgets=budgets,
                budget_changes=changes,
                change_behavior=behavior,
            )
            t0 = time.perf_counter()
            build_curve(spec, "UTC")
            print(f"{n:>8} {behavior:>8} {time.perf_counter() - t0:>8.3f}")


if __name__ == "__main__":
    main()
