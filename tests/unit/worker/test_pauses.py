"""Which jobs a worker's pauses hold (no servers)."""

from __future__ import annotations

from ferry.worker.pauses import Pauses


def test_a_tenants_pause_holds_all_its_jobs_and_a_types_only_that_type() -> None:
    pauses = Pauses()
    assert not pauses.holds("a", "sleep")
    pauses.replace({("a", ""), ("b", "email")})
    assert pauses.holds("a", "sleep") and pauses.holds("a", "email")
    assert pauses.holds("b", "email")
    assert not pauses.holds("b", "sleep")
    assert not pauses.holds("c", "email")
    assert not pauses.holds(None, "email")  # a message with no tenant
    pauses.replace(set())
    assert not pauses.holds("a", "sleep")
