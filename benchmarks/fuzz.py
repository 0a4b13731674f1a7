"""The long fuzz run: hostile requests (tests/fuzz/fuzz_cases.py) from several client threads
against `reallocator serve` in a child process, for N minutes, while a probe checks health
every 0.2 s. Prints cases, statuses per kind of mutation, health latency and RSS.

    .venv/bin/python benchmarks/fuzz.py --minutes 10 [--clients 4] [--workers 1] [--seed 1]

Passes (exit 0) when: no crash, no status outside OK / INVALID_ARGUMENT / FAILED_PRECONDITION /
RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED, every OK response keeps its rules, health answered
within 1 s throughout, no worker restarted, no call past its deadline, and RSS at the end within
20 % of its level after the first minute of fuzzing (the 50 warm-up calls do not reach every
path: the life-cycle RPCs and their store add ~40 MB in that minute, then RSS stays flat).
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))

from fuzz_cases import (  # noqa: E402
    Case,
    ServerProcess,
    allowed,
    check_response,
    random_case,
    valid_request,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="server processes (RSS: 1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plans", type=int, default=20, help="real plans for life-cycle cases")
    args = parser.parse_args()

    server = ServerProcess(workers=args.workers, keep_files=True)
    warm = random.Random(0)  # the first calls import and allocate what later calls reuse
    for _ in range(10):
        method, request = valid_request(warm)
        server.call(Case("warm-up", method, request.SerializeToString()))
    server.seed_plans(args.plans)
    for _ in range(40):
        server.call(random_case(warm))
    baseline = server.rss()
    stop_at = time.monotonic() + 60 * args.minutes
    lock = threading.Lock()
    statuses: collections.Counter[tuple[str, str]] = collections.Counter()
    findings: list[str] = []
    health_worst = [0.0]
    health_failures = [0]
    rss_peak = [baseline]
    rss_over_time: list[tuple[float, int]] = [(0.0, baseline)]
    slowest: dict[str, float] = collections.defaultdict(float)  # per RPC, seconds
    per_rpc: collections.Counter[tuple[str, str]] = collections.Counter()
    workers_at_start = server.children()
    worker_changes: list[str] = []

    def client(index: int) -> None:
        rng = random.Random(args.seed * 1000 + index)
        while time.monotonic() < stop_at and server.alive():
            case = random_case(rng)
            started = time.monotonic()
            code, reply, details = server.call(case)
            took = time.monotonic() - started
            broken = check_response(case.method, reply) if reply is not None else []
            with lock:
                statuses[(case.kind, code.name)] += 1
                per_rpc[(case.method, code.name)] += 1
                slowest[case.method] = max(slowest[case.method], took)
                if took > case.timeout + 5:  # the deadline plus the drain of a stream
                    findings.append(f"{case.kind}: {case.method} took {took:.1f} s")
                if code not in allowed(case):
                    findings.append(f"{case.kind}: {code.name}: {details[:200]}")
                if broken:
                    findings.append(f"{case.kind}: OK but {broken[:3]}")

    def probe() -> None:
        next_sample = time.monotonic() + 60
        while time.monotonic() < stop_at and server.alive():
            if time.monotonic() >= next_sample:
                next_sample += 60
                with lock:
                    rss_over_time.append((time.monotonic() - started_at, server.rss()))
            now_workers = server.children()
            if workers_at_start and now_workers != workers_at_start:
                with lock:
                    change = f"{sorted(workers_at_start)} -> {sorted(now_workers)}"
                    if change not in worker_changes:
                        worker_changes.append(change)
            started = time.monotonic()
            answer = server.health(timeout=1.0)
            took = time.monotonic() - started
            with lock:
                health_worst[0] = max(health_worst[0], took)
                if answer != "SERVING" or took > 1.0:
                    findings.append(f"health probe: {answer} after {took:.2f} s")
                    health_failures[0] += 1
                rss_peak[0] = max(rss_peak[0], server.rss() if server.alive() else 0)
            time.sleep(0.2)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    threads.append(threading.Thread(target=probe))
    started = started_at = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    alive = server.alive()
    settle = time.monotonic() + 15
    reference = rss_over_time[1][1] if len(rss_over_time) >= 2 else baseline
    while alive and server.rss() > 1.2 * reference and time.monotonic() < settle:
        time.sleep(0.5)
    rss_end = server.rss() if alive else 0
    log = server.stop()

    total = sum(statuses.values())
    print(f"fuzz: {total} cases in {elapsed:.0f} s ({total / elapsed:.1f}/s), "
          f"{args.clients} clients, {args.workers} server process(es)")  # fmt: skip
    by_code: collections.Counter[str] = collections.Counter()
    for (kind, code), n in sorted(statuses.items()):
        by_code[code] += n
        print(f"  {kind:<14} {code:<20} {n:>7}")
    print("  statuses: " + ", ".join(f"{c} {n}" for c, n in by_code.most_common()))
    print("per RPC (cases, statuses, slowest answer):")
    for method in sorted({m for m, _ in per_rpc}):
        codes = {c: n for (m, c), n in per_rpc.items() if m == method}
        seen = ", ".join(f"{c} {n}" for c, n in sorted(codes.items(), key=lambda x: -x[1]))
        print(f"  {method:<22} {sum(codes.values()):>7}  slowest {slowest[method]:6.2f} s  {seen}")
    over_time = (f"{t / 60:.0f} min {r / 1e6:.0f} MB" for t, r in rss_over_time)
    print("RSS over time: " + ", ".join(over_time))
    for change in worker_changes[:5]:
        findings.append(f"worker died and was restarted: {change}")
    print(f"server alive to the end: {alive}; crashes: {0 if alive else 1}")
    print(f"health: worst {health_worst[0] * 1000:.0f} ms, failed/slow probes {health_failures[0]}")
    print(f"RSS: after warm-up {baseline / 1e6:.0f} MB, peak {rss_peak[0] / 1e6:.0f} MB, "
          f"end {rss_end / 1e6:.0f} MB ({rss_end / baseline - 1:+.0%})")  # fmt: skip
    for finding in findings[:20]:
        print("FINDING", finding)
        found = re.search(r"request id (\w+)", finding)
        at = log.find(found.group(1)) if found else -1
        if at >= 0:  # the server log's record of it: the stack the caller never sees
            print("  server log:", log[at : at + 2500])
    reference = rss_over_time[1][1] if len(rss_over_time) >= 2 else baseline
    print(f"RSS at the end vs after the first minute: {rss_end / reference - 1:+.0%}")
    ok = alive and not findings and not health_failures[0] and rss_end <= 1.2 * reference
    if "Traceback" in log or "Segmentation" in log:
        print("server log:", log[-2000:])
        ok = False
    print(f"server log: {server.log_path}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
