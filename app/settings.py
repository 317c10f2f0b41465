"""The operator's settings, named exactly as the contract names them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from app.durations import parse_duration
from scheduler.timing import QuietHours
from storage.config import DatabaseSettings

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _host_port(value: object) -> str:
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port; write it like 0.0.0.0:8081")
    return str(value)


HostPort = Annotated[str, BeforeValidator(_host_port)]


class Settings(DatabaseSettings):
    """Every knob of the service; read once in the composition root and passed down. DATABASE_URL
    and DATA_DIR are storage's own (`storage.config`), read the same way."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    llm_backend: Literal["tgi", "transformers"] = "tgi"
    tgi_url: str = "http://localhost:8080"
    tgi_api_key: SecretStr | None = None
    llm_model: str | None = None
    persona_file: Path | None = None
    sentiment_model: str | None = None
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_listen: HostPort = "0.0.0.0:8081"
    checkin_after: Duration = timedelta(hours=24)
    checkin_sweep_every: Duration = timedelta(seconds=60)
    checkin_max_unanswered: int = Field(default=2, ge=0)
    quiet_hours: Annotated[QuietHours, NoDecode, BeforeValidator(QuietHours.parse)] = QuietHours(22, 8)
    default_tz: str = "UTC"
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_listen: HostPort | None = None
    reply_debounce: Duration = timedelta(seconds=1.5)
    llm_timeout: Duration = timedelta(seconds=30)
    shutdown_grace: Duration = timedelta(seconds=20)
    outage_patience: Duration = timedelta(minutes=10)
    database_patience: Duration = timedelta(seconds=20)
    stream_replies: bool = True
    memory_recall: bool = True
    model_concurrency: int = Field(default=16, ge=0)
    model_server: Literal["auto", "tgi", "vllm", "sglang", "llamacpp"] = "auto"
    model_max_tokens: int = Field(default=0, ge=0)
    access_mode: Literal["open", "allowlist", "invite", "approval"] = "open"
    limit_replies_per_minute: int = Field(default=20, ge=0)
    limit_tokens_per_day: int = Field(default=0, ge=0)
    newcomers_per_minute: int = Field(default=0, ge=0)
    followups: bool = True
    followup_delay: Duration = timedelta(hours=2)
    asr_backend: Literal["faster-whisper", "pocketsphinx", "off"] = "faster-whisper"
    asr_model: str = "base"
    voice_max_seconds: int = Field(default=300, ge=1)

    @field_validator("bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here rather than by aiogram so a wrong token fails before its slow import.
        if value is None or not value.get_secret_value():
            return None
        token = value.get_secret_value()
        bot_id, sep, secret = token.partition(":")
        if not sep or not bot_id.isdigit() or not secret or any(c.isspace() for c in token):
            raise ValueError("not a bot token (it looks like 123456:ABC-...); get one from @BotFather")
        return value

    @field_validator("telegram_api_url", "tgi_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            # Never echo the value: a pasted URL may carry the token (".../bot123:ABC").
            raise ValueError("must be an http:// or https:// URL with a host, like https://api.telegram.org")
        return value

    @field_validator("default_tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA zone; write it like Europe/Berlin") from None
        return value

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            if not all(part.lstrip("-").isdigit() for part in parts):
                raise ValueError(f"{value!r} is not a comma-separated list of Telegram user ids")
            return frozenset(int(part) for part in parts)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("checkin_sweep_every", "checkin_after", "llm_timeout", "outage_patience", "database_patience")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero, e.g. 60s")
        return value

    @field_validator("access_mode", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    def telegram_token(self) -> str:
        """The bot token, for the commands that talk to Telegram; a clear error when unset."""
        if self.bot_token is None:
            raise SettingsError("invalid setting BOT_TOKEN: required to talk to Telegram; get one from @BotFather")
        return self.bot_token.get_secret_value()


class SettingsError(Exception):
    """A setting is wrong; ``str()`` is the one line an operator needs."""


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and ``.env``; one clear line when one is bad."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    except SourceError as exc:  # a value pydantic-settings could not even decode
        raise SettingsError(f"invalid setting: {exc} (set it in the environment or .env)") from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]).upper() if error["loc"] else "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "literal_error":
            message = f"must be {message.removeprefix('Input should be ')}"
        problems.append(f"{name}: {message}")
    return "invalid setting " + "; ".join(problems) + " (set it in the environment or .env)"
