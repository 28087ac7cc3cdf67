"""`just bench`: Ferry's benchmarks, each against the baselines it must beat, in one run.

Every measurement runs in a fresh process on a fresh database and Redis
namespace; each is repeated and the table shows medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from bench.services import bench_database, redis_namespace
from ferry.migrate import upgrade


def run_drain(scenario: str, n: int) -> dict[str, Any]:
    with redis_namespace() as namespace, bench_database() as database_url:
        upgrade(database_url)
        output = subprocess.run(
            [sys.executable, "-m", "bench.drain", scenario, str(n), namespace, database_url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def workers(n: int, runs: int, progress: Callable[[str], None]) -> None:
    results: dict[str, list[dict[str, Any]]] = {
        "bare": [],
        "naive": [],
        "ferry-8": [],
        "ferry-32": [],
    }
    for run in range(1, runs + 1):
        for scenario in results:  # interleaved, so drift hits every scenario alike
            progress(f"workers: run {run}/{runs}, {scenario} ({n} jobs)")
            results[scenario].append(run_drain(scenario, n))
    table = {scenario: medians(rows) for scenario, rows in results.items()}
    bare, naive = table["bare"]["jobs_per_s"], table["naive"]["jobs_per_s"]
    print()
    print(f"Worker drain: {n} jobs queued, 1 worker process, median of {runs} runs")
    print()
    print(
        "| scenario | threads | jobs/s | SQL statements/job | event round trips/job | / (a) bare | / (b) naive |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    labels = {
        "bare": ("(a) bare Dramatiq, no-op actor", 8),
        "naive": ("(b) naive per-job design", 8),
        "ferry-8": ("(c) Ferry, batching middleware", 8),
        "ferry-32": ("(c) Ferry, batching middleware (default)", 32),
    }
    for scenario, (label, threads) in labels.items():
        row = table[scenario]
        print(
            f"| {label} | {threads} | {row['jobs_per_s']:,.0f} | {row['statements_per_job']:.3f} | "
            f"{row['event_round_trips_per_job']:.3f} | {row['jobs_per_s'] / bare:.2f} | "
            f"{row['jobs_per_s'] / naive:.2f} |"
        )
    print()
    for scenario in ("ferry-8", "ferry-32"):
        row = table[scenario]
        print(f"{scenario}: c/a = {row['jobs_per_s'] / bare:.2f} (goal >= 0.8), "
              f"c/b = {row['jobs_per_s'] / naive:.2f} (goal >= 3), "
              f"transitions per statement = {row['transitions_per_statement']:.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per drain (default 5000)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are shown")
    args = parser.parse_args()

    def progress(line: str) -> None:
        print(f"... {line}", file=sys.stderr, flush=True)

    workers(args.jobs, args.runs, progress)


if __name__ == "__main__":
    main()
