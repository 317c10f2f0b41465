"""`aifriend` and `python -m app`: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from app.logging import SecretMasker, configure_logging
from app.settings import Settings, SettingsError, load_settings
from storage.errors import DatabaseConfigError, DatabaseError, SchemaOutdatedError

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]

USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    from app import commands

    parser = argparse.ArgumentParser(
        prog="aifriend",
        description="An AI friend on Telegram. Settings come from the environment or .env.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for spec in commands.ALL:
        sub = subparsers.add_parser(spec.name, help=spec.help, description=spec.help)
        spec.configure(sub)
        sub.set_defaults(spec=spec)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from app.commands import CommandSpec, logs_to_file

    args = build_parser().parse_args(argv)
    spec: CommandSpec = args.spec
    try:
        settings = load_settings()
    except SettingsError as exc:
        return _fail(str(exc), USAGE_ERROR)
    secrets = _secrets(settings)
    log_file = settings.data_dir / "logs" / f"{spec.name}.log" if logs_to_file(spec, args) else None
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=secrets, file=log_file)
    if log_file is not None:
        print(f"aifriend: the log is in {log_file} (--verbose shows it here)", file=sys.stderr)
    masker = SecretMasker(secrets)
    run: Command = spec.run
    # The one place any failure becomes a line for a person: masked, since an exception may carry
    # the token (a URL with it) or the database URL; the traceback goes to the (masked) log.
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(run(args, settings))
    except (SettingsError, SchemaOutdatedError, DatabaseConfigError) as exc:
        return _fail(masker.mask(str(exc)), USAGE_ERROR)
    except DatabaseError as exc:
        return _fail(masker.mask(str(exc)), 1)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        structlog.get_logger(__name__).error("crashed", exc_info=True)
        return _fail(masker.mask(f"stopped by an unexpected error: {exc.__class__.__name__}: {exc}"[:500]), 1)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (it is a dependency on Linux and macOS): its sockets and
    scheduling cost the reply path less CPU than asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _fail(message: str, code: int) -> int:
    print(f"aifriend: {message}", file=sys.stderr)
    return code


def _secrets(settings: Settings) -> list[str | None]:
    from storage.database import url_password

    held = (settings.bot_token, settings.webhook_secret, settings.tgi_api_key)
    secrets = [s.get_secret_value() if s else None for s in held]
    if settings.database_url is not None:
        secrets.append(url_password(settings.database_url.get_secret_value()))
    return secrets
