"""Which jobs a worker's pauses hold (no servers)."""

from __future__ import annotations

from ferry.worker.pauses import Pauses


def test_a_tenants_pause_holds_all_its_jobs_and_a_types_only_that_type() -> None:
    pauses = Pauses()
    assert not pauses.hold("a", "sleep")
    pauses.replace({("a", ""), ("b", "email")})
    assert pauses.hold("a", "sleep") and pauses.hold("a", "email")
    assert pauses.hold("b", "email")
    assert not pauses.hold("b", "sleep")
    assert not pauses.hold("c", "email")
    assert not pauses.hold(None, "email")  # a message with no tenant
    pauses.replace(set())
    assert not pauses.hold("a", "sleep")
