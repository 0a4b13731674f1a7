"""How the reallocation engine scales: build / solve / verify / total for 1k, 10k, 100k and 1M
deals (100 sellers, 10 channels, 3 value segments, churn on deals and channels), on both
paths, beside the same model built the straightforward way in PuLP (a variable and a constraint
at a time) and solved by CBC.

Targets on a 2-core machine, fast (flow) path: 10k under 40 ms, 100k under 0.5 s, 1M under 6 s
within 1 GB; at least 100x faster than PuLP at 10k and 300x at 100k.

Each measurement runs in a fresh process (spawned), so its peak RSS is its own and PuLP is
never imported next to OR-Tools' solvers (see ../shared/NOTES.md). Timings are medians over
`--repeat` solves after the first (2 solves at 1M); "1st total" is that first solve in the
fresh process, which pays the page faults of first touching its memory (costly on this VM:
~0.5 GB/s) -- a long-running service sees the steady state. PuLP is skipped above
`--pulp-max` deals (default 100k: the per-variable route needs minutes there already and would
need tens of GB beyond).

    .venv/bin/python benchmarks/solver_scaling.py [--sizes 1000 10000 100000 1000000]
        [--repeat 5] [--pulp-max 100000] [--money]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time
from collections.abc import Sequence
from typing import Any

TARGETS_S = {10_000: 0.040, 100_000: 0.5, 1_000_000: 6.0}
PULP_RATIO = {10_000: 100.0, 100_000: 300.0}
MEMORY_LIMIT_MB = 1024.0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _engine(path: str, n: int, repeat: int, money: bool) -> dict[str, Any]:
    """Solve `repeat` times on one path; median timings, peak RSS, objective."""
    from reallocator.core.engine import SolvePath, solve
    from reallocator.core.engine.synthetic import random_problem

    problem = random_problem(n, seed=n, money_cap_share=0.5 if money else None)
    base = _rss_mb()
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = solve(problem, path=SolvePath(path))
        wall = time.perf_counter() - t
        runs.append((result.timings.build, result.timings.solve, result.timings.verify, wall))
    warm = runs[1:] or runs  # the first solve in a fresh process pays page faults
    build, solve_s, verify, total = (statistics.median(r[i] for r in warm) for i in range(4))
    return {
        "first": runs[0][3],
        "build": build,
        "solve": solve_s,
        "verify": verify,
        "total": total,
        "rss_mb": _rss_mb(),
        "rss_delta_mb": _rss_mb() - base,
        "objective": result.objective.objective,
        "delivered": result.objective.delivered,
        "status": str(result.status),
    }


def _pulp(n: int, money: bool) -> dict[str, Any]:
    """The same problem written the straightforward way: per deal a variable x_d, one variable
    per value segment with x_d = sum of them, |x_d - c_d| through u_d and two rows; per channel
    |X_c - C_c| through w_c; then the two priorities as two CBC solves (max sum x; fix it, max
    value - churn). Every variable and row is added one at a time, as PuLP is usually used."""
    import pulp

    from reallocator.core.engine.problem import NO_MAX
    from reallocator.core.engine.synthetic import random_problem

    p = random_problem(n, seed=n, money_cap_share=0.5 if money else None)
    k = p.n_segments
    ub = [int(v) for v in p.ub_capped]
    t0 = time.perf_counter()
    m = pulp.LpProblem("reallocation", pulp.LpMaximize)
    x, value, churn = [], [], []
    by_channel: list[list[Any]] = [[] for _ in range(p.n_channels)]
    by_seller: list[list[Any]] = [[] for _ in range(p.n_sellers)]
    for d in range(n):
        xd = m.add_variable(f"x_{d}", int(p.lb[d]), ub[d])
        starts = [0, *(int(b) for b in p.value_breaks[d])]
        ends = [*(int(b) for b in p.value_breaks[d]), ub[d]]
        z = [m.add_variable(f"z_{d}_{j}", 0, max(0, ends[j] - starts[j])) for j in range(k)]
        m += pulp.lpSum(z) == xd, f"segments_{d}"
        value += [float(p.value_slopes[d, j]) * z[j] for j in range(k)]
        u = m.add_variable(f"u_{d}", 0)
        m += u >= xd - int(p.current[d]), f"up_{d}"
        m += u >= int(p.current[d]) - xd, f"down_{d}"
        churn.append(p.lam_deal * u)
        x.append(xd)
        by_channel[int(p.channel[d])].append(xd)
        by_seller[int(p.seller[d])].append(xd)
    current = p.current_channel_totals()
    for c in range(p.n_channels):
        total_c = pulp.lpSum(by_channel[c])
        w = m.add_variable(f"w_{c}", 0)
        m += w >= total_c - int(current[c]), f"channel_up_{c}"
        m += w >= int(current[c]) - total_c, f"channel_down_{c}"
        churn.append(p.lam_channel * w)
        m += total_c >= int(p.channel_min[c]), f"channel_min_{c}"
        if p.channel_max[c] != NO_MAX:
            m += total_c <= int(p.channel_max[c]), f"channel_max_{c}"
    for q in range(p.n_sellers):
        m += pulp.lpSum(by_seller[q]) >= int(p.seller_min[q]), f"seller_min_{q}"
        if p.seller_max[q] != NO_MAX:
            m += pulp.lpSum(by_seller[q]) <= int(p.seller_max[q]), f"seller_max_{q}"
    m += pulp.lpSum(x) <= p.total, "total"
    if p.money_cap is not None and p.price_num is not None:
        price = p.price_num / p.price_den
        m += pulp.lpSum(float(price[d]) * x[d] for d in range(n)) <= p.money_cap, "money"
    m += pulp.lpSum(x)
    t1 = time.perf_counter()
    m.solve(pulp.PULP_CBC_CMD(msg=False))
    delivered = float(pulp.value(m.objective))
    t2 = time.perf_counter()
    m += pulp.lpSum(x) >= delivered - 1e-6 * max(1.0, delivered), "delivered"
    m += pulp.lpSum(value) - pulp.lpSum(churn)
    t3 = time.perf_counter()
    m.solve(pulp.PULP_CBC_CMD(msg=False))
    t4 = time.perf_counter()
    return {
        "build": (t1 - t0) + (t3 - t2),
        "solve": (t2 - t1) + (t4 - t3),
        "verify": 0.0,
        "total": t4 - t0,
        "first": t4 - t0,
        "rss_mb": _rss_mb(),
        "rss_delta_mb": float("nan"),
        "objective": float(pulp.value(m.objective)),
        "status": pulp.LpStatus[m.status],
    }


def _child(kind: str, n: int, repeat: int, money: bool, out: Any) -> None:
    import warnings

    warnings.simplefilter("ignore")
    out.put(json.dumps(_pulp(n, money) if kind == "PULP" else _engine(kind, n, repeat, money)))


def measure(kind: str, n: int, repeat: int, money: bool) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(kind, n, repeat, money, queue))
    proc.start()
    result: dict[str, Any] = json.loads(queue.get())
    proc.join()
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pulp-max", type=int, default=100_000)
    parser.add_argument("--money", action="store_true", help="add a binding money cap")
    args = parser.parse_args(argv)

    header = f"{'deals':>9} {'path':<5} {'build':>9} {'solve':>9} {'verify':>9} {'total':>9}"
    print(f"{header} {'1st total':>10} {'peak RSS':>9}  note")
    checks: list[str] = []
    for n in args.sizes:
        repeat = 2 if n >= 1_000_000 else args.repeat
        rows: dict[str, dict[str, Any]] = {}
        for kind in ("FLOW", "LP", "PULP"):
            if kind == "FLOW" and args.money:
                continue  # with a binding money cap only the LP path applies
            if kind == "PULP" and n > args.pulp_max:
                print(f"{n:>9} {'PULP':<5} skipped (above --pulp-max)")
                continue
            r = rows[kind] = measure(kind, n, repeat, args.money)
            ms = [f"{1000 * r[k]:>7.1f}ms" for k in ("build", "solve", "verify", "total")]
            note = r["status"]
            if kind == "PULP":
                engine_obj = rows.get("FLOW", rows.get("LP", {})).get("objective")
                if engine_obj is not None:
                    gap = abs(r["objective"] - engine_obj) / max(1.0, abs(engine_obj))
                    note += f", objective vs engine: rel diff {gap:.1e}"
            first = f"{1000 * r['first']:>8.1f}ms"
            print(f"{n:>9} {kind:<5} {' '.join(ms)} {first} {r['rss_mb']:>7.0f}MB  {note}")
        fast = rows.get("FLOW") or rows.get("LP")
        if fast is None:
            continue
        if "PULP" in rows:
            for kind in ("FLOW", "LP"):
                if kind in rows:
                    ratio = rows["PULP"]["total"] / rows[kind]["total"]
                    print(f"{n:>9} PuLP/{kind.lower()} total time ratio: {ratio:,.0f}x")
                    if kind == "FLOW" and n in PULP_RATIO:
                        ok = ratio >= PULP_RATIO[n]
                        checks.append(f"{n:>9} flow >= {PULP_RATIO[n]:.0f}x PuLP: {_ok(ok)}")
        if "FLOW" in rows and n in TARGETS_S:
            flow = rows["FLOW"]
            ok, cold = flow["total"] < TARGETS_S[n], flow["first"] < TARGETS_S[n]
            line = f"{n:>9} flow total < {TARGETS_S[n] * 1000:.0f} ms: {_ok(ok)}"
            line += f" (first solve: {_ok(cold)})"
            if n >= 1_000_000:
                mem_ok = rows["FLOW"]["rss_mb"] < MEMORY_LIMIT_MB
                line += f"; peak RSS < {MEMORY_LIMIT_MB:.0f} MB: {_ok(mem_ok)}"
            checks.append(line)
    if checks:
        print("\ntargets")
        print("\n".join(checks))


def _ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


if __name__ == "__main__":
    main()
