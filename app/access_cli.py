"""`aifriend access`: operators manage who may talk and how much from a shell, the same decisions
(and the same `access_log` rows, `by_user_id` NULL) as the Telegram commands."""

from __future__ import annotations

import argparse

from app.durations import parse_duration
from app.settings import Settings, SettingsError


def configure(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    invite = verbs.add_parser("invite", help="a new invite code (ACCESS_MODE=invite), shown once")
    invite.add_argument("--uses", type=int, default=1, help="how many people may use it (default: 1)")
    invite.add_argument("--valid", default="7d", help="how long it works, e.g. 12h or 7d (default: 7d)")
    invite.add_argument("--bot", help="the bot's username, to print the t.me link")
    for verb, says in (
        ("allow", "let a user talk (their waiting messages are answered)"),
        ("refuse", "refuse a user (told once, kindly)"),
        ("block", "stop answering a user, silently"),
    ):
        sub = verbs.add_parser(verb, help=says)
        sub.add_argument("user_id", type=int)
    verbs.add_parser("pending", help="users waiting for approval")
    limit = verbs.add_parser("limit", help="a user's own limits (default: the settings' again)")
    limit.add_argument("user_id", type=int)
    limit.add_argument("--replies-per-minute", type=int, help="0: no limit; unset: LIMIT_REPLIES_PER_MINUTE")
    limit.add_argument("--tokens-per-day", type=int, help="0: no limit; unset: LIMIT_TOKENS_PER_DAY")
    log = verbs.add_parser("log", help="the latest access decisions (the access_log view)")
    log.add_argument("--last", type=int, default=20)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from app.wiring import services
    from storage.access import AccessRepo

    async with services(settings, need_model=False) as friend, friend.database.transaction() as tx:
        desk = friend.access
        if args.verb == "invite":
            try:
                valid = parse_duration(args.valid)
            except ValueError as exc:
                raise SettingsError(f"--valid: {exc}") from None
            if not 1 <= args.uses <= 1000:
                raise SettingsError("--uses must be between 1 and 1000")
            code = await desk.invite(tx, uses=args.uses, valid=valid, by_user_id=None)
            print(f"https://t.me/{args.bot}?start={code}" if args.bot else f"code: {code}")
            if not args.bot:
                print("the link is https://t.me/<your bot's username>?start=<code> (or pass --bot NAME)")
        elif args.verb in ("allow", "refuse", "block"):
            action = {"allow": "allowed", "refuse": "refused", "block": "blocked"}[args.verb]
            await desk.decide(tx, args.user_id, action, by_user_id=None)
            print(f"user {args.user_id}: {action}")
        elif args.verb == "pending":
            waiting = await AccessRepo(tx).pending()
            for user in waiting:
                handle = f" @{user.username}" if user.username else ""
                print(f"{user.user_id}\t{user.first_name or ''}{handle}\tsince {user.since:%Y-%m-%d %H:%M} UTC")
            if not waiting:
                print("nobody is waiting for approval")
        elif args.verb == "limit":
            replies, tokens = args.replies_per_minute, args.tokens_per_day
            if any(value is not None and value < 0 for value in (replies, tokens)):
                raise SettingsError("limits are 0 (none) or more")
            await desk.set_limits(tx, args.user_id, replies=replies, tokens=tokens, by_user_id=None)
            print(f"user {args.user_id}: replies per minute {_shown(replies)}, tokens per day {_shown(tokens)}")
        else:
            for decision in reversed(await AccessRepo(tx).decisions(args.last)):
                print(
                    f"{decision.created_at:%Y-%m-%d %H:%M:%S}\t{decision.action}\tuser {decision.user_id}\t"
                    f"by {decision.by_user_id if decision.by_user_id is not None else 'code/CLI'}\t"
                    f"{decision.detail or ''}"
                )
    return 0


def _shown(limit: int | None) -> str:
    return "the setting's" if limit is None else "none" if limit == 0 else str(limit)
