"""Apply the alembic migrations programmatically (`just migrate`, `just dev`, tests)."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from ferry.settings import load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def main() -> None:
    settings = load_settings()
    upgrade(settings.database_url, sys.argv[1] if len(sys.argv) > 1 else "head")
    print(f"ferry: database is at the latest migration ({settings.database_url.split('@')[-1]})")


if __name__ == "__main__":
    main()
