"""`--chart PATH`: the end-to-end runs as a PNG, throughput and worker memory over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here: render to a file
import matplotlib.pyplot as plt

Timeline = list[list[float]]  # [seconds since start, jobs completed, worker RSS MiB]


def write_chart(path: Path, timelines: dict[str, Timeline]) -> None:
    figure, (rate, memory) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for label, samples in timelines.items():
        seconds = [s[0] for s in samples]
        per_second = [
            (b[1] - a[1]) / (b[0] - a[0])
            for a, b in zip([[0.0, 0, 0], *samples], samples, strict=False)
        ]
        rate.plot(seconds, per_second, label=label)
        memory.plot(seconds, [s[2] for s in samples], label=label)
    rate.set_ylabel("jobs completed per second")
    rate.set_title("Ferry end to end: 1 API process, 1 worker process (32 threads)")
    rate.legend()
    rate.grid(alpha=0.3)
    memory.set_ylabel("worker RSS (MiB)")
    memory.set_xlabel("seconds since the first create request")
    memory.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
