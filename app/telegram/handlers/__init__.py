"""All routers, assembled in one place: commands first, then text, then everything else."""

from aiogram import Router

from app.telegram.handlers import admin, commands, other, text


def build_router() -> Router:
    root = Router(name="aifriend")
    root.include_routers(admin.router, commands.router, text.router, other.router)
    return root
