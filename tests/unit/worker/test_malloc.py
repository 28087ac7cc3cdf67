"""The worker's malloc arena cap (`ferry.worker.malloc`)."""

from __future__ import annotations

import platform

import pytest

from ferry.worker.malloc import limit_arenas


def test_glibc_takes_the_cap() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.fail(f"this test needs glibc, found {platform.libc_ver()}")
    assert limit_arenas()


def test_an_explicit_environment_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not limit_arenas()
