"""The subcommands: each a name, a help line, its options and an async body."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from app.access_cli import configure as access_options
from app.settings import Settings, SettingsError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CommandSpec:
    name: str
    help: str
    run: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
    configure: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    talks_to_a_person: bool = False  # its own lines go to the terminal: logs must not come between them


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from migrations import schema
    from storage.database import describe_url, resolve_database_url

    logging.getLogger("alembic").setLevel(logging.INFO)
    url = await asyncio.to_thread(resolve_database_url, settings.database_url, settings.data_dir)
    await asyncio.to_thread(schema.upgrade, url, args.revision)
    log.info("database_migrated", database=describe_url(url), revision=args.revision)
    return 0


async def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from app.terminal import chat, emulated_model, missing_model_server
    from app.wiring import services

    async with emulated_model(settings, args.emulated_model) as model:
        if model is None and (problem := await missing_model_server(settings)):
            raise SettingsError(problem)
        async with services(settings, reply_debounce=False, role="chat", model=model) as friend:
            return await chat(friend, chat_id=args.chat_id)


async def cmd_fsm_diagram(args: argparse.Namespace, settings: Settings) -> int:
    from app.persona import PersonaError, load_persona
    from fsm import RelationshipMachine

    try:
        persona = load_persona(settings.persona_file)
    except PersonaError as exc:
        raise SettingsError(str(exc)) from None
    print(RelationshipMachine(persona.fsm_thresholds).diagram())
    return 0


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    settings.telegram_token()  # a missing token fails before anything (or any slow import) starts
    from app.serve import serve
    from app.wiring import services

    async with services(settings, role="bot", patience=settings.outage_patience) as friend:
        await serve(settings, friend, with_scheduler=not args.no_scheduler)
    return 0


async def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    settings.telegram_token()
    from app.serve import serve_scheduler
    from app.wiring import services

    async with services(settings, role="scheduler", patience=settings.outage_patience) as friend:
        await serve_scheduler(settings, friend)
    return 0


async def cmd_inspect(args: argparse.Namespace, settings: Settings) -> int:
    from app.reports import format_conversation
    from app.wiring import services

    async with services(settings, need_model=False) as friend:
        report = await friend.reports.conversation(args.chat_id)
    if report is None:
        print(f"aifriend: no conversation with chat id {args.chat_id}; `aifriend stats` counts them all")
        return 1
    print(format_conversation(report))
    return 0


async def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from app.reports import format_stats
    from app.wiring import services

    async with services(settings, need_model=False) as friend:
        print(format_stats(await friend.reports.stats()))
    return 0


async def cmd_access(args: argparse.Namespace, settings: Settings) -> int:
    from app.access_cli import run

    return await run(args, settings)


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from app.demo import run_demo

    return await run_demo(settings)


async def cmd_speech_model(args: argparse.Namespace, settings: Settings) -> int:
    """Load the recogniser ASR_BACKEND and ASR_MODEL name, downloading the model into the Hugging
    Face cache (HF_HOME) if it is not there: run once where the network is, before the bot."""
    from llm.speech import SpeechUnavailableError, load_recognizer

    try:
        recognizer = await asyncio.to_thread(load_recognizer, settings.asr_backend, settings.asr_model)
    except SpeechUnavailableError as exc:
        print(f"aifriend: {exc}", file=sys.stderr)
        return 1
    if recognizer is None:
        print("ASR_BACKEND=off: voice notes get the text-only answer; nothing to load")
        return 0
    if recognizer.name == "faster-whisper":
        cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
        print(f"ready: faster-whisper {settings.asr_model} (HF_HOME={cache})")
    else:
        print(f"ready: {recognizer.name} (its model is inside the package)")
    return 0


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-scheduler", action="store_true", help="do not run check-in sweeps in this process")


def _inspect_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("chat_id", type=int, help="the Telegram chat id")


def _verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the log lines in the terminal too (by default a terminal gets them in DATA_DIR/logs)",
    )


def _chat_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chat-id", type=int, default=-1, help="conversation id to use (default: -1)")
    parser.add_argument(
        "--emulated-model",
        action="store_true",
        help="talk to the built-in emulated model (it echoes you, and says so) instead of TGI_URL: for trying it",
    )
    _verbose(parser)


def _migrate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")


ALL: tuple[CommandSpec, ...] = (
    CommandSpec(
        "demo",
        "the real bot against built-in Telegram and TGI emulators and an embedded PostgreSQL; prints what happened",
        cmd_demo,
        _verbose,
        talks_to_a_person=True,
    ),
    CommandSpec("run", "the Telegram bot: long polling, or a webhook when WEBHOOK_URL is set", cmd_run, _run_options),
    CommandSpec(
        "migrate",
        "alembic upgrade head on the configured database (embedded when DATABASE_URL is unset)",
        cmd_migrate,
        _migrate_options,
    ),
    CommandSpec(
        "chat",
        "talk to the companion in the terminal through the same pipeline (FSM, memory, database, LLM)",
        cmd_chat,
        _chat_options,
        talks_to_a_person=True,
    ),
    CommandSpec("scheduler", "a check-in worker only; any number may run beside any number of bots", cmd_scheduler),
    CommandSpec(
        "inspect",
        "one conversation: state, counts, memory, recent transitions and messages",
        cmd_inspect,
        _inspect_options,
    ),
    CommandSpec("stats", "all conversations: how many in each state, messages and check-ins per day", cmd_stats),
    CommandSpec(
        "access",
        "who may talk and how much: invite, allow, refuse, block, pending, limit, log",
        cmd_access,
        access_options,
    ),
    CommandSpec("fsm-diagram", "print the relationship state machine as a Mermaid stateDiagram-v2", cmd_fsm_diagram),
    CommandSpec(
        "speech-model",
        "load ASR_MODEL for voice notes, downloading it into the Hugging Face cache once (HF_HOME)",
        cmd_speech_model,
    ),
)


def logs_to_file(spec: CommandSpec, args: argparse.Namespace) -> bool:
    """A command that talks to a person in a terminal keeps its logs out of the conversation."""
    return spec.talks_to_a_person and not getattr(args, "verbose", False) and sys.stderr.isatty()
