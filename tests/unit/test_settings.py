"""Settings read as the contract spells them; a bad one is one clear line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.durations import parse_duration
from app.settings import SettingsError, load_settings
from scheduler.timing import QuietHours


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("1.5s", timedelta(seconds=1.5)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_durations_parse_as_written(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "90", "", "1w", "-5s", "5 seconds"])
def test_durations_without_a_known_unit_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("hours", "local_hour", "quiet"),
    [
        ("22-08", 21, False),
        ("22-08", 22, True),
        ("22-08", 3, True),
        ("22-08", 7, True),
        ("22-08", 8, False),
        ("01-05", 0, False),
        ("01-05", 1, True),
        ("01-05", 5, False),
        ("00-00", 3, False),
    ],
)
def test_quiet_hours_wrap_midnight(hours: str, local_hour: int, quiet: bool) -> None:
    local = datetime(2026, 3, 1, local_hour, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert QuietHours.parse(hours).contains(local) is quiet


def test_quiet_hours_end_is_the_next_morning_in_local_time() -> None:
    zone = ZoneInfo("America/New_York")
    evening = datetime(2026, 3, 1, 23, 10, tzinfo=zone)
    assert QuietHours.parse("22-08").end_after(evening) == datetime(2026, 3, 2, 8, 0, tzinfo=zone)
    early = datetime(2026, 3, 2, 6, 0, tzinfo=zone)
    assert QuietHours.parse("22-08").end_after(early) == datetime(2026, 3, 2, 8, 0, tzinfo=zone)


@pytest.mark.parametrize("text", ["22", "25-08", "ten-eight"])
def test_bad_quiet_hours_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        QuietHours.parse(text)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name in {"DATABASE_URL", "CHECKIN_AFTER", "ADMIN_IDS", "QUIET_HOURS", "DEFAULT_TZ", "LOG_LEVEL"}:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_defaults_match_the_contract(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.checkin_after == timedelta(hours=24)
    assert settings.checkin_sweep_every == timedelta(seconds=60)
    assert settings.checkin_max_unanswered == 2
    assert str(settings.quiet_hours) == "22-08"
    assert settings.default_tz == "UTC"
    assert settings.reply_debounce == timedelta(seconds=1.5)
    assert settings.llm_backend == "tgi"
    assert settings.telegram_api_url == "https://api.telegram.org"
    assert settings.webhook_listen == "0.0.0.0:8081"
    assert settings.admin_ids == frozenset()
    assert settings.database_url is None


def test_env_file_in_the_working_directory_is_read(clean_env: pytest.MonkeyPatch) -> None:
    with open(".env", "w") as env:
        env.write("CHECKIN_AFTER=15m\nADMIN_IDS=5, 6\nDEFAULT_TZ=Asia/Tokyo\n")
    settings = load_settings()
    assert settings.checkin_after == timedelta(minutes=15)
    assert settings.admin_ids == frozenset({5, 6})
    assert settings.default_tz == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHECKIN_AFTER", "soon"),
        ("DEFAULT_TZ", "Mars/Olympus"),
        ("ADMIN_IDS", "alice"),
        ("QUIET_HOURS", "late"),
        ("LLM_BACKEND", "gpu"),
        ("DATABASE_URL", "mysql://x"),
        ("WEBHOOK_LISTEN", "8081"),
        ("CHECKIN_MAX_UNANSWERED", "many"),
    ],
)
def test_a_bad_setting_names_itself(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


@pytest.mark.parametrize("token", ["not-a-token", "987654", "abc:DEF", "987654:", "987 654:XYZ"])
def test_a_malformed_bot_token_is_refused_without_echoing_it(clean_env: pytest.MonkeyPatch, token: str) -> None:
    clean_env.setenv("BOT_TOKEN", token)
    with pytest.raises(SettingsError, match="BOT_TOKEN") as refused:
        load_settings()
    assert token not in str(refused.value)


def test_a_missing_bot_token_is_named_only_when_telegram_is_needed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BOT_TOKEN", "")
    settings = load_settings()
    assert settings.bot_token is None
    with pytest.raises(SettingsError, match="BOT_TOKEN"):
        settings.telegram_token()
    clean_env.setenv("BOT_TOKEN", "123456:ABC-def_1")
    assert load_settings().telegram_token() == "123456:ABC-def_1"


def test_cli_exits_2_with_one_line_for_a_bad_setting(tmp_path: os.PathLike[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"CHECKIN_AFTER": "soon"}
    result = subprocess.run(
        [sys.executable, "-m", "app", "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "CHECKIN_AFTER" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
