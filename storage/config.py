"""Where the database is: the two settings storage reads, from the environment or `.env`.

The service's settings (`app.settings`) include these; migrations read them on their own, so a
plain `alembic upgrade head` finds the same database as `aifriend migrate`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    database_url: SecretStr | None = None
    data_dir: Path = Path("./var")

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith(("postgresql://", "postgresql+asyncpg://", "postgres://")):
            raise ValueError("must be a postgresql+asyncpg://user:password@host:port/db URL")
        return value
