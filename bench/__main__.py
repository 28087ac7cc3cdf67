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
from pathlib import Path
from typing import Any

from bench.chart import write_chart
from bench.recovery import PRUNED
from bench.services import bench_database, redis_namespace
from ferry.db.retention import BATCH
from ferry.migrate import upgrade
from ferry.worker.recovery import SCAN_LIMIT, WINDOWS_PER_PASS


def measure(module: str, *args: object) -> dict[str, Any]:
    """`python -m <module> <args...> <namespace> <database>` on a fresh database and
    Redis namespace; the last line of its standard output is the JSON result."""
    with redis_namespace() as namespace, bench_database() as database_url:
        upgrade(database_url)
        output = subprocess.run(
            [sys.executable, "-m", module, *map(str, args), namespace, database_url],
            check=True,
            stdout=subprocess.PIPE,  # stderr passes through: progress, and errors
            text=True,
        ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def run_drain(scenario: str, n: int) -> dict[str, Any]:
    return measure("bench.drain", scenario, n)


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    numbers = (key for key, value in runs[0].items() if isinstance(value, int | float))
    return {key: statistics.median(run[key] for run in runs) for key in numbers}


# Live events: (label, module arguments). Fan-out runs 500 jobs/s for 10 s.
REALTIME = {
    "redis": (
        "(a) Redis pub/sub straight to redis-py subscribers (baseline)",
        ("redis", 1000, 1000, 500, 10),
    ),
    "fanout": (
        "(b) Ferry fan-out over WebSocket, 1,000 tenants x 1 subscriber",
        ("fanout", 1000, 1000, 500, 10),
    ),
    "crowd": (
        "(c) Ferry fan-out over WebSocket, 100 tenants x 10 subscribers",
        ("fanout", 1000, 100, 500, 10),
    ),
    "latency": ("Ferry latency at 100 jobs/s, 1 tenant", ("latency", 300, 100)),
}
# Subscribers that do not read, beside 100 that do (10 tenants, 500 jobs/s for 20 s).
CROWD = {
    "alone": ("alone", ("stalled", 100, 10, 500, 20, 0)),
    "stalled": ("+ 500 WebSockets and 1 SSE that never read", ("stalled", 100, 10, 500, 20, 500)),
    "readers": (
        "+ 500 WebSockets and 1 SSE that read (control)",
        ("readers", 100, 10, 500, 20, 500),
    ),
}


def realtime(runs: int, progress: Callable[[str], None]) -> None:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in REALTIME | CROWD}
    for run in range(1, runs + 1):
        for name, (_, args) in (REALTIME | CROWD).items():
            progress(f"realtime: run {run}/{runs}, {name}")
            result = measure("bench.realtime", *args)
            if name == "latency":  # one row per transport
                results.setdefault("latency-ws", []).append(
                    result["ws"] | {"expected": result["expected"]}
                )
                results.setdefault("latency-sse", []).append(
                    result["sse"] | {"expected": result["expected"]}
                )
            else:
                results[name].append(result)
    del results["latency"]
    crowd = {name: medians(results.pop(name)) for name in CROWD}
    table = {name: medians(rows) for name, rows in results.items()}
    baseline = table["redis"]["p99_ms"]
    labels = {name: label for name, (label, _) in REALTIME.items()}
    labels |= {"latency-ws": "(d) Ferry, one WebSocket subscriber, 100 jobs/s",
               "latency-sse": "(e) Ferry, one SSE subscriber, 100 jobs/s"}  # fmt: skip
    print()
    print(f"Live events: commit of a transition -> arrival at the client, median of {runs} runs")
    print()
    print(
        "| scenario | events expected | delivered | deliveries/s | p50 ms | p99 ms | max ms | p99 / (a) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, row in table.items():
        rate = f"{row['deliveries_per_s']:,.0f}" if "deliveries_per_s" in row else "-"
        print(
            f"| {labels[name]} | {row['expected']:,.0f} | {row['events']:,.0f} | {rate} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['max_ms']:.1f} | {row['p99_ms'] / baseline:.1f} |"
        )
    fanout = table["fanout"]
    print()
    print(f"fan-out (b): p99 {fanout['p99_ms']:.1f} ms (goal < 50 ms), "
          f"{fanout['events']:,.0f} of {fanout['expected']:,.0f} events delivered, "
          f"{fanout['jobs_per_s']:,.0f} jobs/s created")  # fmt: skip
    crowded(crowd, runs)


def crowded(table: dict[str, dict[str, float]], runs: int) -> None:
    alone = table["alone"]
    print()
    print("Subscribers that do not read: 100 WebSocket subscribers over 10 tenants, 500 jobs/s "
          f"asked for 20 s, median of {runs} runs")  # fmt: skip
    print()
    print("| the 100 subscribers' events and the creates | "
          + " | ".join(f"{label} | / alone" if name != "alone" else label
                       for name, (label, _) in CROWD.items()) + " |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows = (("events delivered / expected", None), ("event p50 ms", "p50_ms"),
            ("event p99 ms", "p99_ms"), ("event max ms", "max_ms"),
            ("batch create p50 ms", "create_p50_ms"), ("batch create p99 ms", "create_p99_ms"),
            ("jobs created /s", "jobs_per_s"), ("API peak RSS MiB", "api_rss_peak_mib"),
            ("subscribers cut", "cut"))  # fmt: skip
    for label, key in rows:
        cells = []
        for name in CROWD:
            row = table[name]
            if key is None:
                cells.append(f"{row['events']:,.0f} / {row['expected']:,.0f}")
            else:
                cells.append(f"{row[key]:,.1f}" if row[key] < 100 else f"{row[key]:,.0f}")
            if name != "alone":
                cells.append(
                    f"{row[key] / alone[key]:.2f}"
                    if key not in (None, "cut") and alone[key]
                    else "-"
                )
        print(f"| {label} | " + " | ".join(cells) + " |")
    stalled, readers = table["stalled"], table["readers"]
    print()
    print(f"never reading vs reading: event p99 {stalled['p99_ms'] / readers['p99_ms']:.2f} x, "
          f"batch create p99 {stalled['create_p99_ms'] / readers['create_p99_ms']:.2f} x, "
          f"peak RSS {stalled['api_rss_peak_mib'] / readers['api_rss_peak_mib']:.2f} x")  # fmt: skip


def workers(n: int, runs: int, progress: Callable[[str], None]) -> None:
    results: dict[str, list[dict[str, Any]]] = {
        "bare": [],
        "path-32": [],
        "naive": [],
        "ferry-8": [],
        "ferry-32": [],
        "fifo-32": [],
        "processes-1": [],
        "processes-2": [],
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
        "| scenario | threads | jobs/s | SQL statements/job | event round trips/job | / (a) bare | / (b) naive | worker CPU ms/job |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    labels = {
        "bare": ("(a) bare Dramatiq, no-op actor", 8),
        "path-32": ("(a') Ferry's broker (acks in groups), no-op actor, no database or events", 32),
        "naive": ("(b) naive per-job design", 8),
        "ferry-8": ("(c) Ferry, batching middleware", 8),
        "ferry-32": ("(c) Ferry, batching middleware (default)", 32),
        "fifo-32": ("(c') Ferry, one FIFO queue (FAIR_SCHEDULING=false)", 32),
    }
    for scenario, (label, threads) in labels.items():
        row = table[scenario]
        cpu = f"{row['worker_cpu_ms_per_job']:.3f}" if "worker_cpu_ms_per_job" in row else "-"
        print(
            f"| {label} | {threads} | {row['jobs_per_s']:,.0f} | {row['statements_per_job']:.3f} | "
            f"{row['event_round_trips_per_job']:.3f} | {row['jobs_per_s'] / bare:.2f} | "
            f"{row['jobs_per_s'] / naive:.2f} | {cpu} |"
        )
    print()
    for scenario in ("ferry-8", "ferry-32"):
        row = table[scenario]
        print(f"{scenario}: c/a = {row['jobs_per_s'] / bare:.2f} (goal >= 0.8), "
              f"c/b = {row['jobs_per_s'] / naive:.2f} (goal >= 3), "
              f"transitions per statement = {row['transitions_per_statement']:.1f}")  # fmt: skip
    one, two = (table[f"processes-{count}"]["jobs_per_s"] for count in (1, 2))
    print(f"`dramatiq actors` (32 threads): 1 worker process {one:,.0f} jobs/s, "
          f"WORKER_PROCESSES=2 {two:,.0f}: {two / one:.2f} x (goal >= 1.6)")  # fmt: skip
    fair, fifo = table["ferry-32"]["jobs_per_s"], table["fifo-32"]["jobs_per_s"]
    print(f"fair scheduling for a tenant alone: {fair / fifo:.2f} x FIFO throughput "
          f"(cost {1 - fair / fifo:.0%}, goal < 10%)")  # fmt: skip


ASYNC_JOBS = 1000  # of `await asyncio.sleep(1)`


def async_jobs(runs: int, progress: Callable[[str], None]) -> None:
    scenarios = {
        "ferry-8": "(c) Ferry, one job loop per process",
        "ferry-32": "(c) Ferry, one job loop per process (default threads)",
        "dramatiq-32": "(a) plain Dramatiq, AsyncIO middleware (a thread waits for each job)",
    }
    results: dict[str, list[dict[str, Any]]] = {scenario: [] for scenario in scenarios}
    for run in range(1, runs + 1):
        for scenario in results:
            progress(f"async: run {run}/{runs}, {scenario} ({ASYNC_JOBS} jobs)")
            results[scenario].append(measure("bench.async_jobs", scenario, ASYNC_JOBS))
    table = {scenario: medians(rows) for scenario, rows in results.items()}
    plain = table["dramatiq-32"]["seconds"]
    print()
    print(
        f"Async handlers: {ASYNC_JOBS:,} jobs of `await asyncio.sleep(1)` queued, "
        f"1 worker process, median of {runs} runs (ideal: 1 s)"
    )
    print()
    print("| scenario | threads | seconds | jobs/s | threads in use | speed-up / (a) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for scenario, label in scenarios.items():
        row = table[scenario]
        print(
            f"| {label} | {scenario.split('-')[1]} | {row['seconds']:.2f} | "
            f"{row['jobs_per_s']:,.0f} | {row['threads']:.0f} | {plain / row['seconds']:.1f} |"
        )


# The noisy neighbour: (flood jobs, quiet jobs).
FLOOD, QUIET = 20_000, 20


def fairness(runs: int, progress: Callable[[str], None]) -> None:
    results: dict[str, list[dict[str, Any]]] = {"fair": [], "fifo": []}
    for run in range(1, runs + 1):
        for mode in results:
            progress(f"fairness: run {run}/{runs}, {mode} ({FLOOD} + {QUIET} jobs)")
            results[mode].append(measure("bench.fairness", mode, FLOOD, QUIET))
    table = {mode: medians(rows) for mode, rows in results.items()}
    print()
    print(f"Noisy neighbour: tenant A sends {FLOOD:,} jobs, 0.5 s later tenant B sends {QUIET}; "
          f"1 worker process x 32 threads, median of {runs} runs")  # fmt: skip
    print()
    print("| scheduling | B's wait p50 ms | B's wait p99 ms | A's drain s | jobs/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    labels = {"fifo": "one FIFO queue (FAIR_SCHEDULING=false)", "fair": "fair (default)"}
    for mode in ("fifo", "fair"):
        row = table[mode]
        print(f"| {labels[mode]} | {row['quiet_p50_ms']:,.0f} | {row['quiet_p99_ms']:,.0f} | "
              f"{row['flood_drain_s']:.1f} | {row['jobs_per_s']:,.0f} |")  # fmt: skip
    fair, fifo = table["fair"], table["fifo"]
    print()
    print(f"B's p99 wait: {fair['quiet_p99_ms']:,.0f} ms fair vs {fifo['quiet_p99_ms']:,.0f} ms "
          f"FIFO ({fifo['quiet_p99_ms'] / max(fair['quiet_p99_ms'], 1):,.0f}x shorter), "
          f"{fair['quiet_p99_ms'] / 1000 / fair['flood_drain_s']:.1%} of A's drain")  # fmt: skip


def endtoend(n: int, runs: int, progress: Callable[[str], None], chart: Path | None) -> None:
    results: dict[str, list[dict[str, Any]]] = {"naive": [], "single": [], "batch": []}
    limits: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    for run in range(1, runs + 1):
        progress(f"end to end: run {run}/{runs}, the machine's limits")
        limits.append(measure("bench.limits"))
        progress(f"end to end: run {run}/{runs}, bare Dramatiq drain ({n} jobs)")
        bare.append(run_drain("bare", n))
        for mode in results:
            progress(f"end to end: run {run}/{runs}, {mode} ({n} jobs)")
            results[mode].append(measure("bench.e2e", mode, n))
    progress(f"end to end: batch at 10 x N ({10 * n} jobs, one run)")
    grown = measure("bench.e2e", "batch", 10 * n)
    limit, drain = medians(limits), medians(bare)["jobs_per_s"]
    table = {mode: medians(rows) for mode, rows in results.items()} | {"batch-10x": grown}
    if chart is not None:
        timelines = {f"{mode} ({n:,} jobs, run 1)": results[mode][0]["timeline"]
                     for mode in ("single", "batch")}  # fmt: skip
        write_chart(chart, timelines | {f"batch ({10 * n:,} jobs)": grown["timeline"]})
    print()
    print(f"The machine's limits, median of {runs} runs")
    print()
    print("| Redis LPUSH/s | Redis PUBLISH/s | PostgreSQL INSERT rows/s (1,000 per statement) "
          "| PostgreSQL UPDATE = ANY rows/s | bare Dramatiq no-op drain jobs/s |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: |")
    print(f"| {limit['redis_lpush_per_s']:,.0f} | {limit['redis_publish_per_s']:,.0f} | "
          f"{limit['pg_insert_rows_per_s']:,.0f} | {limit['pg_update_rows_per_s']:,.0f} | "
          f"{drain:,.0f} |")  # fmt: skip
    print()
    print(f"End to end: {n:,} jobs created, run by 1 worker process, every COMPLETED event "
          f"received by a WebSocket subscriber; median of {runs} runs (10 x N: one run)")  # fmt: skip
    print()
    print("| scenario | jobs/s | created/s | create p50/p99 ms | create to COMPLETED p50/p99 ms "
          "| event p99 ms | API / worker peak RSS MiB | / bare drain | / naive |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    labels = {
        "naive": "(b) the seeds' design, naive (INSERT + 2 UPDATE + 2 PUBLISH per job, no HTTP)",
        "single": "(c) Ferry, `POST /jobs`, 32 in flight",
        "batch": "(d) Ferry, `POST /jobs/batch` of 1,000",
        "batch-10x": f"(d) at 10 x N ({10 * n:,} jobs)",
    }
    naive = table["naive"]["jobs_per_s"]
    for mode, label in labels.items():
        row = table[mode]
        print(f"| {label} | {row['jobs_per_s']:,.0f} | {row['create_per_s']:,.0f} | "
              f"{row['create_p50_ms']:,.0f} / {row['create_p99_ms']:,.0f} | "
              f"{row['complete_p50_ms']:,.0f} / {row['complete_p99_ms']:,.0f} | "
              f"{row['event_p99_ms']:,.0f} | {row['api_rss_mib']:.0f} / {row['worker_rss_mib']:.0f} | "
              f"{row['jobs_per_s'] / drain:.2f} | {row['jobs_per_s'] / naive:.2f} |")  # fmt: skip
    print()
    print(f"worker RSS over the 10 x N run: {grown['worker_rss_warm_mib']:.1f} MiB once a tenth "
          f"of the jobs were done, {grown['worker_rss_half_mib']:.1f} MiB at half, "
          f"{grown['worker_rss_end_mib']:.1f} MiB at the end (goal: flat)")  # fmt: skip
    print(f"batch: {table['batch']['jobs_per_s'] / drain:.2f} x bare drain (goal >= 0.6), "
          f"{table['batch']['jobs_per_s'] / naive:.2f} x naive (goal >= 3); "
          f"single POSTs: {table['single']['create_per_s']:,.0f} created/s (goal >= 1,500)")  # fmt: skip


# The peers bench: (label, module arguments after N), interleaved in this order.
PEERS = {
    "ferry": ("Ferry, `POST /jobs/batch` of 1,000, 1 worker x 32 threads", ("bench.e2e", "batch")),
    "ferry-2": (
        "Ferry, the same with `WORKER_PROCESSES=2` (2 x 32 threads)",
        ("bench.e2e", "batch-2-workers"),
    ),
    # What the API, PostgreSQL and Redis do before any worker takes a job.
    "ferry-front": (
        "Ferry's front half alone: the same creates with no worker, until every PENDING event",
        ("bench.e2e", "front"),
    ),
    # One Dramatiq message per job, as Ferry's worker fetches and acks them, doing nothing.
    "path": (
        "Ferry's message path alone: a no-op actor on Ferry's broker (acks in groups), "
        "1 process x 32 threads, the N messages queued first (no database, events or fairness)",
        ("bench.drain", "path-32"),
    ),
    "pgqueuer-10": ("pgqueuer 1.6.0, `pgq run`, default `--batch-size 10`", ("bench.peers", 10)),
    "pgqueuer-50": ("pgqueuer 1.6.0, `pgq run --batch-size 50`", ("bench.peers", 50)),
    # Single creates, 32 in flight: Ferry's `POST /jobs`, pgqueuer's one-job `enqueue`.
    "ferry-single": ("Ferry, `POST /jobs` one job each, 32 in flight", ("bench.e2e", "single")),
    "pgqueuer-single": (
        "pgqueuer 1.6.0, `enqueue` one job each, 32 in flight (a pool of 32), `pgq run`",
        ("bench.peers", "10-single"),
    ),
    # The web stack alone: a create route that does nothing, one uvicorn process.
    "litestar": (
        "Litestar alone: a create route that does nothing",
        ("bench.http_floor", "single"),
    ),
}


def peers(n: int, runs: int, progress: Callable[[str], None]) -> None:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in PEERS}
    for run in range(1, runs + 1):
        for name, (_, (module, arg)) in PEERS.items():
            progress(f"peers: run {run}/{runs}, {name} ({n} jobs)")
            results[name].append(measure(module, arg, n))
    table = {name: medians(rows) for name, rows in results.items()}
    ferry = table["ferry"]["jobs_per_s"]
    print()
    print(f"Peers: {n:,} no-op jobs of one tenant bulk-created through each system's client, "
          f"1 worker process started by its own CLI, until its own durable record shows all "
          f"done (the floors, Ferry's front half and message path and Litestar, as their "
          f"labels say); rounds interleaved, median of {runs} runs")  # fmt: skip
    print()
    print("| system | jobs/s | x Ferry | worker CPU ms/job | whole machine CPU ms/job |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (label, _) in PEERS.items():
        row = table[name]
        if "jobs_per_s" not in row:  # requests only (Litestar alone): in the lines below
            continue
        cpu = f"{row['worker_cpu_ms_per_job']:.3f}" if "worker_cpu_ms_per_job" in row else "-"
        if "api_cpu_ms_per_job" in row:
            cpu += f" (+ API {row['api_cpu_ms_per_job']:.3f})"
        print(f"| {label} | {row['jobs_per_s']:,.0f} | {row['jobs_per_s'] / ferry:.2f} | {cpu} "
              f"| {row['machine_cpu_ms_per_job']:.3f} |")  # fmt: skip
    print()
    rounds = ", ".join(f"{ours['jobs_per_s'] / theirs['jobs_per_s']:.2f}"
                       for ours, theirs in zip(results["ferry"], results["pgqueuer-50"], strict=True))  # fmt: skip
    print(f"Ferry: {ferry / table['pgqueuer-50']['jobs_per_s']:.2f} x pgqueuer at batch 50 "
          f"(goal >= 1.0; per round {rounds}), worker CPU "
          f"{table['ferry']['worker_cpu_ms_per_job']:.3f} ms/job (goal <= 0.1)")  # fmt: skip
    print(f"WORKER_PROCESSES=2: {table['ferry-2']['jobs_per_s'] / ferry:.2f} x one process "
          "(goal >= 1.6)")  # fmt: skip
    front, fastest = table["ferry-front"], table["pgqueuer-50"]
    print(f"Ferry's message path alone (one message per job, doing nothing): "
          f"{table['path']['jobs_per_s'] / fastest['jobs_per_s']:.2f} x pgqueuer at batch 50")  # fmt: skip
    print(f"Ferry's front half alone (no worker): {front['jobs_per_s'] / fastest['jobs_per_s']:.2f} "
          f"x pgqueuer's whole run at batch 50; the machine's CPU per job: Ferry's front half "
          f"{front['machine_cpu_ms_per_job']:.3f} ms, Ferry end to end "
          f"{table['ferry']['machine_cpu_ms_per_job']:.3f}, pgqueuer at batch 50 "
          f"{fastest['machine_cpu_ms_per_job']:.3f}")  # fmt: skip
    ours, theirs = (table[name]["create_per_s"] for name in ("ferry-single", "pgqueuer-single"))
    print(f"Single creates, 32 in flight: Ferry {ours:,.0f} created/s, pgqueuer {theirs:,.0f} "
          f"enqueued/s: {ours / theirs:.2f} x (goal >= 1.5)")  # fmt: skip
    floor = table["litestar"]
    print(f"Litestar alone (a create route that does nothing, one uvicorn process, the same "
          f"client): {floor['create_per_s']:,.0f} created/s, {floor['create_per_s'] / theirs:.2f} x "
          f"pgqueuer's; server CPU {floor['server_cpu_ms_per_request']:.3f} ms per request; "
          f"Ferry's API {table['ferry-single']['api_cpu_ms_per_job']:.3f} ms per job of the "
          f"single-create run (the create and its three events forwarded)")  # fmt: skip


SCALE_ROWS = 1_000_000


def scale(progress: Callable[[str], None]) -> None:
    progress(f"scale: {SCALE_ROWS:,} jobs in the table (one run)")
    row = measure("bench.scale", SCALE_ROWS)
    print()
    print(f"Reads with {SCALE_ROWS:,} jobs in the table (900,000 of them the tenant's), "
          "one request at a time, ms")  # fmt: skip
    print()
    print("| request | Ferry p50 | Ferry p99 | baseline: counting the rows, p50 | p99 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, label in (("list", "`GET /jobs?tenantId` (first page, with `total`)"),
                        ("list_failed", "`GET /jobs?tenantId&status=FAILED`"),
                        ("stats", "`GET /jobs/stats?tenantId`")):  # fmt: skip
        print(f"| {label} | {row[f'{name}_p50_ms']:.1f} | {row[f'{name}_p99_ms']:.1f} | "
              f"{row[f'{name}_count_p50_ms']:.1f} | {row[f'{name}_count_p99_ms']:.1f} |")  # fmt: skip
    print()
    print(f"Drain of 5,000 new jobs (32 threads): {row['drain_empty_jobs_per_s']:,.0f} jobs/s "
          f"on the empty table, {row['drain_jobs_per_s']:,.0f} jobs/s beside the "
          f"{SCALE_ROWS:,} ({row['drain_jobs_per_s'] / row['drain_empty_jobs_per_s']:.2f} x)")  # fmt: skip


RETENTION_ROWS = 1_000_000


def retention(jobs: int, progress: Callable[[str], None]) -> None:
    progress(f"retention: pruning {RETENTION_ROWS:,} finished jobs beside a drain (one run)")
    row = measure("bench.retention", RETENTION_ROWS, jobs)
    print()
    print(f"Retention: {RETENTION_ROWS:,} finished jobs past their retention pruned beside a "
          f"drain of {jobs:,} jobs (1 worker process x 32 threads), interleaved rounds")  # fmt: skip
    print()
    print("| | quiet | pruning | ratio |")
    print("| --- | ---: | ---: | ---: |")
    ratio = row["pruning_jobs_per_s"] / row["quiet_jobs_per_s"]
    print(f"| drain, jobs/s | {row['quiet_jobs_per_s']:,.0f} | {row['pruning_jobs_per_s']:,.0f} | "
          f"{ratio:.2f} x |")  # fmt: skip
    for stat in ("p50", "p99"):
        quiet, busy = row[f"quiet_list_{stat}_ms"], row[f"pruning_list_{stat}_ms"]
        print(f"| `GET /jobs?tenantId` {stat}, ms | {quiet:.1f} | {busy:.1f} | "
              f"{busy / quiet:.2f} x |")  # fmt: skip
    print()
    print(f"Pruned {row['pruned_per_s']:,.0f} rows/s while the rounds ran; the rest of the "
          f"{RETENTION_ROWS:,} in {row['finish_s']:.1f} s after. Left past retention: "
          f"{row['left_past_retention']}; counters equal to COUNT(*): {row['counters_exact']}")  # fmt: skip
    print(f"Goals: the drain costs < 20% ({1 - ratio:.0%}); GET /jobs p99 < 20 ms "
          f"({row['pruning_list_p99_ms']:.1f} ms)")  # fmt: skip


HELD_ROWS, LOST_ROWS = 1_000_000, 100


def recovery(progress: Callable[[str], None]) -> None:
    progress(f"recovery: lost jobs behind {HELD_ROWS:,} held jobs of a paused tenant (one run)")
    row = measure("bench.recovery", HELD_ROWS, LOST_ROWS)
    print()
    print(f"Recovery: {LOST_ROWS} lost jobs (PENDING, overdue, no message) behind "
          f"{HELD_ROWS:,} held jobs of a paused tenant, on one database")  # fmt: skip
    print()
    print("| search | ms per pass | passes until all are sent again |")
    print("| --- | ---: | ---: |")
    print(f"| (a) one query skipping the held jobs in SQL (the search before windows) | "
          f"{row['baseline_pass_ms']:,.1f} | 1 |")  # fmt: skip
    print(f"| (b) Ferry: windows of {SCAN_LIMIT:,} jobs, at most {WINDOWS_PER_PASS} a pass | "
          f"{row['pass_ms']:,.1f} (at most {row['pass_max_ms']:,.1f}) | {row['passes']} |")  # fmt: skip
    print()
    print(f"(b) / (a): {row['pass_ms'] / row['baseline_pass_ms']:.2f} x the time of a pass; "
          f"sent again: {row['resent']} of {LOST_ROWS}")  # fmt: skip
    print()
    print(f"Retention: {PRUNED:,} jobs of other tenants past 7 days pruned, a batch of "
          f"{BATCH:,} at a time, beside {HELD_ROWS:,} older jobs of a tenant that keeps its "
          f"own 90 days")  # fmt: skip
    print()
    print("| pruning | seconds |")
    print("| --- | ---: |")
    print(f"| (a) each batch from the oldest finished job (before places) | "
          f"{row['prune_baseline_s']:.2f} |")  # fmt: skip
    print(f"| (b) Ferry: each batch on from where the last ended | {row['prune_s']:.2f} |")
    print()
    print(f"(b) / (a): {row['prune_s'] / row['prune_baseline_s']:.2f} x. With nothing left to "
          f"delete, a pass of the recovery's pruning: {row['idle_pass_baseline_ms']:,.1f} ms from "
          f"the oldest (before places), {row['idle_pass_ms']:,.1f} ms from the places")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per drain (default 5000)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are shown")
    parser.add_argument(
        "--only",
        choices=[
            "workers",
            "async",
            "fairness",
            "realtime",
            "e2e",
            "peers",
            "scale",
            "retention",
            "recovery",
        ],
        help="run one suite (default: all)",
    )
    parser.add_argument(
        "--chart", type=Path, help="write the end-to-end runs over time to this PNG file"
    )
    args = parser.parse_args()

    def progress(line: str) -> None:
        print(f"... {line}", file=sys.stderr, flush=True)

    if args.only in (None, "workers"):
        workers(args.jobs, args.runs, progress)
    if args.only in (None, "async"):
        async_jobs(args.runs, progress)
    if args.only in (None, "fairness"):
        fairness(args.runs, progress)
    if args.only in (None, "realtime"):
        realtime(args.runs, progress)
    if args.only in (None, "e2e"):
        endtoend(args.jobs, args.runs, progress, args.chart)
    if args.only in (None, "peers"):
        peers(args.jobs, args.runs, progress)
    if args.only in (None, "scale"):
        scale(progress)
    if args.only in (None, "retention"):
        retention(args.jobs, progress)
    if args.only in (None, "recovery"):
        recovery(progress)


if __name__ == "__main__":
    main()
