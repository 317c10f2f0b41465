"""All routers, assembled in one place: operators' and access commands first, then the user's
commands, then text, voice and video notes, then everything else."""

from aiogram import Router

from app.telegram.handlers import access, admin, commands, other, plans, text, voice


def build_router() -> Router:
    root = Router(name="aifriend")
    root.include_routers(
        admin.router, access.router, plans.router, commands.router, text.router, voice.router, other.router
    )
    return root
