"""The emulated Telegram users: what they send, press and get redelivered."""

from __future__ import annotations

import time
from typing import Any

from app.emulators.telegram_state import BOT_USER, SEND_FAULTS, EmulatorState


class SimulatedUsers(EmulatorState):
    def message(
        self,
        chat_id: int,
        *,
        text: str | None = None,
        user_id: int | None = None,
        username: str | None = "user",
        chat_type: str = "private",
        **content: Any,
    ) -> dict[str, Any]:
        user = {
            "id": user_id or chat_id,
            "is_bot": False,
            "first_name": (username or "User").title(),
            "username": username,
            "language_code": "en",
        }
        chat = {"id": chat_id, "type": chat_type}
        chat |= {"first_name": user["first_name"]} if chat_type == "private" else {"title": "A group"}
        message = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
            **content,
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return message

    def push(self, **update: Any) -> int:
        update_id = next(self._ids)
        self.pushed_at[update_id] = time.monotonic()
        self.updates.append({"update_id": update_id, **update})
        self._arrived.set()
        return update_id

    def push_raw(self, update: dict[str, Any]) -> int:
        """Hand out any update as it is (a poison one, an unknown type): no validation at all."""
        return self.push(**update)

    def chaos(self, seconds: float, rate: float, kinds: tuple[str, ...] = SEND_FAULTS) -> None:
        """For `seconds`, each sending call fails with probability `rate`, in one of `kinds`."""
        self.chaos_until, self.chaos_rate, self.chaos_kinds = time.monotonic() + seconds, rate, kinds

    def user_sends(self, chat_id: int, text: str, **kwargs: Any) -> int:
        return self.push(message=self.message(chat_id, text=text, **kwargs))

    def user_sends_sticker(self, chat_id: int) -> int:
        sticker = {
            "file_id": "CAAC",
            "file_unique_id": "s1",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "😀",
        }
        return self.push(message=self.message(chat_id, sticker=sticker))

    def user_sends_voice(
        self,
        chat_id: int,
        audio: bytes,
        duration: int,
        *,
        video: bool = False,
        claimed_size: int | None = None,
        **kwargs: Any,
    ) -> int:
        """A voice note (OGG/Opus), or with `video` a round video note, as Telegram sends them: the
        message holds the file's id, duration and size; the bytes come from `getFile` and the file
        route. `claimed_size`: the size Telegram reports (a note over the 20 MB download limit)."""
        file_id = f"AwACAgIAAx{next(self._ids):06d}"
        self.files[file_id] = audio
        size = claimed_size if claimed_size is not None else len(audio)
        if claimed_size is not None:
            self.file_sizes[file_id] = claimed_size
        attached: dict[str, Any] = {"file_id": file_id, "file_unique_id": f"AgAD{file_id[-6:]}", "duration": duration}
        if video:
            message = self.message(chat_id, video_note=attached | {"length": 240, "file_size": size}, **kwargs)
        else:
            message = self.message(chat_id, voice=attached | {"mime_type": "audio/ogg", "file_size": size}, **kwargs)
        return self.push(message=message)

    def user_presses(self, chat_id: int, message_id: int, data: str) -> int:
        user = {"id": chat_id, "is_bot": False, "first_name": "User"}
        original = next(m for m in self.sent[chat_id] if m["message_id"] == message_id)
        return self.push(
            callback_query={
                "id": str(next(self._ids)),
                "from": user,
                "chat_instance": "1",
                "data": data,
                "message": original,
            }
        )

    def user_blocks_bot(self, chat_id: int, blocked: bool = True) -> int:
        """The user blocks the bot (or unblocks it): a `my_chat_member` update, as Telegram sends."""
        user = {"id": chat_id, "is_bot": False, "first_name": "User"}
        member = {"status": "member", "user": BOT_USER}
        kicked = {"status": "kicked", "user": BOT_USER, "until_date": 0}
        return self.push(
            my_chat_member={
                "chat": {"id": chat_id, "type": "private", "first_name": "User"},
                "from": user,
                "date": int(time.time()),
                "old_chat_member": member if blocked else kicked,
                "new_chat_member": kicked if blocked else member,
            }
        )

    def redeliver(self, update_id: int) -> None:
        """Hand an update out again, as Telegram does after a crash or a failed webhook call."""
        update = next(u for u in self.updates if u["update_id"] == update_id)
        self.updates.append(dict(update))
        self._confirmed = min(self._confirmed, update_id - 1)
        self._scan_from = 0  # what was confirmed before may be pending again
        self._arrived.set()
