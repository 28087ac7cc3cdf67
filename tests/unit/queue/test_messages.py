"""A job message encoded for the tenants' queues is the message Dramatiq would send."""

from __future__ import annotations

import time

import dramatiq

from ferry.queue.messages import JOBS_QUEUE, job_message, outgoing, outgoing_of


def test_an_outgoing_message_decodes_as_the_message_it_stands_for() -> None:
    for priority in (5, 9):
        sent = outgoing("job-1", "sleep", "acme", priority)
        decoded = dramatiq.Message.decode(sent.data)
        expected = job_message("job-1", "sleep", "acme", priority).copy(
            options={"redis_message_id": sent.redis_message_id},
            message_id=decoded.message_id,
            message_timestamp=decoded.message_timestamp,
        )
        assert decoded == expected
        assert sent.data == expected.encode()  # the very bytes Dramatiq would send
        assert decoded.queue_name == JOBS_QUEUE
        assert isinstance(decoded.message_timestamp, int)  # ms since the epoch
        assert abs(decoded.message_timestamp - time.time() * 1000) < 5_000
        assert (sent.tenant_id, sent.priority) == ("acme", priority)
        assert outgoing_of(expected) == sent


def test_each_outgoing_message_has_ids_of_its_own() -> None:
    first, second = (dramatiq.Message.decode(outgoing("j", "sleep", "t").data) for _ in range(2))
    assert first.message_id != second.message_id
    assert first.options["redis_message_id"] != second.options["redis_message_id"]
