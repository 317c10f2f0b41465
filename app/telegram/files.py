"""Files users sent, fetched through the Bot API: `getFile`, then the file route."""

from __future__ import annotations

import io

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest

from app.services.voice import DownloadTooBigError

DOWNLOAD_TIMEOUT = 60  # seconds for a file of up to 20 MB


class BotFiles:
    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def download(self, file_id: str) -> bytes:
        try:
            file = await self.bot.get_file(file_id, request_timeout=15)
        except TelegramBadRequest as exc:
            if "too big" in exc.message.lower():
                raise DownloadTooBigError(exc.message) from exc
            raise
        if file.file_path is None:
            raise DownloadTooBigError("Telegram gave no file path")
        buffer = io.BytesIO()
        await self.bot.download_file(file.file_path, buffer, timeout=DOWNLOAD_TIMEOUT)
        return buffer.getvalue()
