"""conversations.prompt_stage: the stage whose system prompt opens a chat's prompts

The system prompt followed the current stage, so every stage change (a bad day into `repair` and
back) rewrote the start of the prompt, and the model server's prefix cache reused nothing of it.
Now the system prompt stays the one of `prompt_stage` until the next fold or /clear, and a stage
change in between is a note stored with the message it came with (like a recall note), so each
prompt starts with the whole of the previous one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 20:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = "'icebreaker', 'warming', 'close', 'repair'"


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column(
            "prompt_stage",
            sa.Text(),
            server_default="icebreaker",
            nullable=False,
            comment="the stage whose system prompt opens the chat's prompts until the next fold or /clear; "
            "a later stage change is a note with the message it came with, so the prompt's start stays the same",
        ),
    )
    op.execute("UPDATE conversations SET prompt_stage = state")
    op.create_check_constraint(op.f("ck_conversations_prompt_stage"), "conversations", f"prompt_stage IN ({STATES})")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_conversations_prompt_stage"), "conversations", type_="check")
    op.drop_column("conversations", "prompt_stage")
