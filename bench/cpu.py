"""CPU time from /proc: of a process and its descendants, and of the whole machine."""

from __future__ import annotations

import os
from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """A process and its descendants: `dramatiq` forks its worker, `uv run` spawns Python."""
    pids = [pid]
    for children in Path(f"/proc/{pid}").glob("task/*/children"):
        for child in children.read_text().split():
            pids += process_tree(int(child))
    return pids


def machine_cpu_seconds() -> float:
    """CPU time this machine's cores spent working since boot (/proc/stat), whoever spent
    it: the system's processes and the bench's own. Not idle, waiting on I/O or stolen
    (time the hypervisor gave to another machine)."""
    # user nice system idle iowait irq softirq steal (guest time is counted in user)
    user, nice, system, _, _, irq, softirq = map(
        int, Path("/proc/stat").read_text().split(maxsplit=8)[1:8]
    )
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (/proc/<pid>/stat)."""
    ticks = 0
    for each in process_tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # ended since it was listed
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return ticks / os.sysconf("SC_CLK_TCK")


class Spent:
    """The CPU time some processes (each with its descendants) and the whole machine spent
    between `start()` and `stop()`."""

    def __init__(self, **pids: int) -> None:
        """`pids`: a name for each process -> its pid; the machine is named `machine`."""
        self.pids = pids
        self._started: dict[str, float] = {}
        self._seconds: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return cpu | {"machine": machine_cpu_seconds()}

    def start(self) -> Spent:
        self._started = self._read()
        return self

    def stop(self) -> None:
        ended = self._read()
        self._seconds = {name: ended[name] - self._started[name] for name in ended}

    def ms_per(self, n: int, unit: str = "job") -> dict[str, float]:
        """`<name>_cpu_ms_per_<unit>` for each process and the machine, over `n` units."""
        return {f"{name}_cpu_ms_per_{unit}": s * 1000 / n for name, s in self._seconds.items()}
