"""Small helpers the handlers share."""

from __future__ import annotations

from aiogram.types import User

from storage.rows import UserInfo


def user_info(user: User | None, fallback_id: int) -> UserInfo:
    if user is None:
        return UserInfo(user_id=fallback_id)
    return UserInfo(
        user_id=user.id, username=user.username, first_name=user.first_name, language_code=user.language_code
    )
