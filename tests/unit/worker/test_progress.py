"""The progress buffer: the latest report of each job until the writer drains it."""

from __future__ import annotations

import threading
import uuid

from ferry.db.transitions import ProgressReport
from ferry.jobs.context import JobContext
from ferry.worker.progress import ProgressBuffer


def test_ten_thousand_reports_of_a_job_are_one_report_the_last() -> None:
    buffer, job = ProgressBuffer(), uuid.uuid4()
    for n in range(10_000):
        buffer.report(job, 1, n / 10_000, f"row {n}")
    assert buffer.pending
    assert buffer.drain() == [ProgressReport(job, 1, 0.9999, "row 9999")]
    assert not buffer.pending and buffer.drain() == []


def test_each_job_keeps_its_own_latest_report() -> None:
    buffer = ProgressBuffer()
    first, second = uuid.uuid4(), uuid.uuid4()
    buffer.report(first, 1, 0.1, "a")
    buffer.report(second, 3, 0.2, None)
    buffer.report(first, 1, 0.3, "b")
    assert buffer.holds_any([second]) and not buffer.holds_any([uuid.uuid4()])
    assert buffer.drain() == [
        ProgressReport(first, 1, 0.3, "b"),
        ProgressReport(second, 3, 0.2, None),
    ]


def test_only_a_report_into_an_empty_buffer_wakes_the_writer() -> None:
    buffer, wakes = ProgressBuffer(), []
    buffer.on_first = lambda: wakes.append(1)
    job = uuid.uuid4()
    for _ in range(1000):
        buffer.report(job, 1, 0.5, None)
    assert len(wakes) == 1
    buffer.drain()
    buffer.report(job, 1, 0.6, None)
    assert len(wakes) == 2


def test_a_stopped_writer_does_not_fail_the_report() -> None:
    buffer = ProgressBuffer()

    def closed() -> None:
        raise RuntimeError("Event loop is closed")

    buffer.on_first = closed
    buffer.report(uuid.uuid4(), 1, 0.5, None)  # no exception into the handler
    assert buffer.pending


def test_threads_reporting_at_once_leave_each_jobs_last_report() -> None:
    buffer = ProgressBuffer()
    jobs = [uuid.uuid4() for _ in range(8)]
    start = threading.Barrier(len(jobs))

    def report(job: uuid.UUID) -> None:
        start.wait()
        for n in range(1, 2001):
            buffer.report(job, 1, n / 2000, None)

    threads = [threading.Thread(target=report, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(buffer.drain(), key=lambda r: jobs.index(r.job_id)) == [
        ProgressReport(job, 1, 1.0, None) for job in jobs
    ]


def test_a_context_reports_its_job_and_attempt_to_the_buffer() -> None:
    buffer, job = ProgressBuffer(), uuid.uuid4()
    ctx = JobContext(job, "t", "resize", 2, 3, _progress_sink=buffer.report)
    ctx.progress(0.25, "downloaded")
    ctx.progress(1)
    assert buffer.drain() == [ProgressReport(job, 2, 1.0, None)]
