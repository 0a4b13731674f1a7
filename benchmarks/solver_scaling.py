"""How the reallocation engine scales: build / solve / verify / total for 1k, 10k, 100k and 1M
deals (100 sellers, 10 channels, 3 value segments, churn on deals and channels), on both
paths, beside the same model built the straightforward way in PuLP (a variable and a constraint
at a time) and solved by CBC.

Targets on a 2-core machine, fast (flow) path: 10k under 40 ms, 100k under 0.5 s, 1M under 6 s
within 1 GB; at least 100x faster than PuLP at 10k and 300x at 100k.

Each measurement runs in a fresh process (spawned), so its peak RSS is its own and PuLP is
never imported next to OR-Tools' solvers (importing pulp breaks OR-Tools' bundled HiGHS:
google/or-tools#5246). Timings are medians over
`--repeat` solves after the first (2 solves at 1M); "1st total" is that first solve in the
fresh process, which pays the page faults of first touching its memory (costly on this VM:
~0.5 GB/s) -- a long-running service sees the steady state. PuLP is skipped above
`--pulp-max` deals (default 100k: the per-variable route needs minutes there already and would
need tens of GB beyond).

    .venv/bin/python benchmarks/solver_scaling.py [--sizes 1000 10000 100000 1000000]
        [--repeat 5] [--pulp-max 100000] [--money] [--infeasible] [--stretch]

`--infeasible` times the diagnosis of infeasible variants of the same instances instead
(engine/diagnosis; target: at most about twice a feasible solve), beside the feasible solve of the
unchanged instance:

    cheap     channel 0's minimum 1,000,000 above what its deals can take, seller 7's 976,266
              above: found by the sum checks
    elastic   channel 0's minimum 1,000 below its deals' maxima, seller 7 capped at its
              commitments: each fine alone, together infeasible (seller 7's deals in channel 0
              cannot deliver): the exact elastic min-cost flow on (channel, seller) pairs
    money     (money-capped family) a cap just above the commitments' money: the pair flow's
              answer breaks the cap, the per-deal elastic LP with the money row decides

"relax" is `solve_or_relax(..., relax=True)` end to end: the failed solve, the diagnosis and
the solve of the relaxed problem.

`--stretch` times placing budget beyond the forecasts (stretch.py) on the same instances with
the budget 30% above what the upper bounds (the forecasts) can absorb, beside the first solve:
with the instances' seller/channel maximums (they bind: the split goes to a second flow) and
without (the closed-form split). Peak RSS is the process's, over both cases.
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


def _infeasible_variants(n: int) -> dict[str, Any]:
    """The three infeasible variants of the docstring, each beside its feasible original."""
    from dataclasses import replace

    from reallocator.core.engine.problem import capped_group_sum, group_sum
    from reallocator.core.engine.synthetic import random_problem

    p = random_problem(n, seed=n)
    ub_c = capped_group_sum(p.ub_capped, p.channel, p.n_channels, p.total)
    ub_s = capped_group_sum(p.ub_capped, p.seller, p.n_sellers, p.total)
    lb_s = group_sum(p.lb, p.seller, p.n_sellers)
    cmin, smin, smax = p.channel_min.copy(), p.seller_min.copy(), p.seller_max.copy()
    cmin[0], smin[7] = ub_c[0] + 1_000_000, ub_s[7] + 976_266
    cheap = replace(p, channel_min=cmin, seller_min=smin)
    cmin = p.channel_min.copy()
    cmin[0], smax[7] = ub_c[0] - 1_000, lb_s[7]
    elastic = replace(p, channel_min=cmin, seller_max=smax)
    pm = random_problem(n, seed=n, money_cap_share=0.5)
    assert pm.price_num is not None
    committed = int(pm.price_num @ pm.lb.astype(float) / pm.price_den)
    money = replace(pm, money_cap=committed + 1_000)
    return {"cheap": (p, cheap), "elastic": (p, elastic), "money": (pm, money)}


def _diagnosis(n: int, repeat: int) -> dict[str, Any]:
    """Median seconds: feasible solve of the original, diagnose and solve_or_relax of the
    variant; what the diagnosis found."""
    from reallocator.core.engine import solve
    from reallocator.core.engine.diagnosis import RelaxationWeights, diagnose, solve_or_relax

    weights = RelaxationWeights()
    out: dict[str, Any] = {}
    for case, (original, variant) in _infeasible_variants(n).items():
        times: dict[str, list[float]] = {"solve": [], "diagnose": [], "relax": []}
        for _ in range(repeat):
            t = time.perf_counter()
            solve(original)
            times["solve"].append(time.perf_counter() - t)
            t = time.perf_counter()
            found = diagnose(variant, weights)
            times["diagnose"].append(time.perf_counter() - t)
            t = time.perf_counter()
            solve_or_relax(variant, weights, relax=True)
            times["relax"].append(time.perf_counter() - t)
        row = {k: statistics.median(v[1:] or v) for k, v in times.items()}
        row["cheap"] = found.cheap
        row["violations"] = [str(v) for v in found.violations]
        row["notes"] = list(found.notes)
        out[case] = row
    return out


def _stretch(n: int, repeat: int) -> dict[str, Any]:
    """Per case (seller/channel maximums kept, or none): median seconds of the first solve and
    of the stretch, what it placed and how (closed form or flow)."""
    return {
        case: _stretch_case(n, repeat, case == "no group max")
        for case in ("limits", "no group max")
    }


def _stretch_case(n: int, repeat: int, drop_max: bool) -> dict[str, Any]:
    from dataclasses import replace

    import numpy as np

    from reallocator.core.engine import solve
    from reallocator.core.engine.problem import NO_MAX
    from reallocator.core.engine.stretch import stretch
    from reallocator.core.engine.synthetic import random_problem

    base = random_problem(n, seed=1)
    problem = replace(base, total=int(base.ub.sum() * 1.3))
    if drop_max:
        problem = replace(
            problem,
            seller_max=np.full_like(problem.seller_max, NO_MAX),
            channel_max=np.full_like(problem.channel_max, NO_MAX),
        )
    eligible = np.ones(n, dtype=bool)
    open_ub = np.full(n, NO_MAX, dtype=np.int64)
    times: dict[str, list[float]] = {"solve": [], "stretch": []}
    placed = left = 0
    for _ in range(repeat):
        t = time.perf_counter()
        first = solve(problem)
        times["solve"].append(time.perf_counter() - t)
        t = time.perf_counter()
        out = stretch(
            problem, first, open_ub=open_ub, capacity=base.ub, eligible=eligible, ratio=1.0
        )
        times["stretch"].append(time.perf_counter() - t)
        assert out is not None
        left = problem.total - int(first.allocation.sum())
        placed = int(out[0].allocation.sum() - first.allocation.sum())
        how = "closed form" if any("closed-form" in x for x in out[0].notes) else "flow"
    row: dict[str, Any] = {k: statistics.median(v[1:] or v) for k, v in times.items()}
    row.update(left=left, placed=placed, how=how, rss_mb=_rss_mb())
    return row


def report_stretch(sizes: Sequence[int], repeat: int) -> None:
    head = f"{'deals':>9} {'case':<13} {'solve':>9} {'stretch':>9} {'ratio':>6} {'peak RSS':>9}"
    print(f"{head}  how, placed / left")
    for n in sizes:
        rows = measure("STRETCH", n, 2 if n >= 1_000_000 else repeat, False)
        for case, r in rows.items():
            ratio = r["stretch"] / r["solve"]
            ms = " ".join(f"{1000 * r[k]:>7.1f}ms" for k in ("solve", "stretch"))
            tail = f"{r['how']}, {r['placed']:,} / {r['left']:,}"
            print(f"{n:>9} {case:<13} {ms} {ratio:>5.1f}x {r['rss_mb']:>7.0f}MB  {tail}")


def _child(kind: str, n: int, repeat: int, money: bool, out: Any) -> None:
    import warnings

    warnings.simplefilter("ignore")
    if kind == "PULP":
        result = _pulp(n, money)
    elif kind == "DIAGNOSIS":
        result = _diagnosis(n, repeat)
    elif kind == "STRETCH":
        result = _stretch(n, repeat)
    else:
        result = _engine(kind, n, repeat, money)
    out.put(json.dumps(result))


def report_diagnosis(sizes: Sequence[int], repeat: int) -> None:
    print(f"{'deals':>9} {'case':<8} {'solve':>9} {'diagnose':>9} {'ratio':>6} {'relax':>9}  found")
    checks: list[str] = []
    for n in sizes:
        rows = measure("DIAGNOSIS", n, 2 if n >= 1_000_000 else repeat, False)
        for case, r in rows.items():
            ratio = r["diagnose"] / r["solve"]
            per_deal = any("per-deal" in note for note in r["notes"])
            how = "sum checks" if r["cheap"] else ("per-deal LP" if per_deal else "pair flow")
            found = f"{how}: " + "; ".join(r["violations"][:3])
            more = len(r["violations"]) - 3
            found += f" (+{more} more)" if more > 0 else ""
            ms = [f"{1000 * r[k]:>7.1f}ms" for k in ("solve", "diagnose")]
            relax = f"{1000 * r['relax']:>7.1f}ms"
            print(f"{n:>9} {case:<8} {' '.join(ms)} {ratio:>5.2f}x {relax}  {found}")
            checks.append(f"{n:>9} {case:<8} diagnosis <= 2x feasible solve: {_ok(ratio <= 2.0)}")
    print("\ntargets")
    print("\n".join(checks))


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
    parser.add_argument(
        "--infeasible", action="store_true", help="time the diagnosis of infeasible variants"
    )
    parser.add_argument(
        "--stretch", action="store_true", help="time placing budget beyond the forecasts"
    )
    args = parser.parse_args(argv)
    if args.infeasible:
        report_diagnosis(args.sizes, args.repeat)
        return
    if args.stretch:
        report_stretch(args.sizes, args.repeat)
        return

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
