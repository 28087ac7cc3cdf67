"""Configuration from the environment."""

from __future__ import annotations

import pytest

from ferry.settings import EMBEDDED_DATABASE_URL, Settings, load_settings


def test_defaults_are_the_embedded_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "PORT", "HOST", "CORS_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(env_file=None)
    assert settings.database_url == EMBEDDED_DATABASE_URL
    assert settings.embedded and settings.is_sqlite
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.cors_origin_list == []


def test_environment_values_are_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example ,")
    monkeypatch.setenv("BATCH_SIZE", "250")
    settings = load_settings(env_file=None)
    assert settings.port == 9123
    assert settings.batch_size == 250
    assert not settings.embedded
    assert settings.cors_origin_list == ["https://a.example", "https://b.example"]


def test_dotenv_fills_in_but_never_overrides(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"  # type: ignore[operator]
    env_file.write_text("PORT=7001\nLOG_LEVEL=DEBUG\n")
    monkeypatch.setenv("PORT", "7002")
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    settings = load_settings(env_file=env_file)
    assert (settings.port, settings.log_level) == (7002, "DEBUG")
    monkeypatch.delenv("LOG_LEVEL", raising=False)


def test_bad_values_stop_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(SystemExit, match="port"):
        load_settings(env_file=None)


def test_retention_is_a_duration_with_its_unit_and_0_keeps_for_ever() -> None:
    settings = load_settings(
        env_file=None, retention_completed="12h", retention_failed="0", retention_cancelled="90s"
    )
    assert settings.retention_ms == {
        "COMPLETED": 12 * 3_600_000, "FAILED": None, "CANCELLED": 90_000,
    }  # fmt: skip
    with pytest.raises(SystemExit, match="RETENTION_COMPLETED: '7' is not a duration"):
        load_settings(env_file=None, retention_completed="7")  # 7 what?
    assert Settings().retention_ms == {
        "COMPLETED": 7 * 86_400_000, "FAILED": 30 * 86_400_000, "CANCELLED": 30 * 86_400_000,
    }  # fmt: skip
    with pytest.raises(SystemExit, match="RETENTION_FAILED: '3 weeks' is not a duration"):
        load_settings(env_file=None, retention_failed="3 weeks")
