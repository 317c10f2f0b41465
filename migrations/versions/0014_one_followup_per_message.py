"""followups: at most one per user message

Plans and reminders are now read from a message when it is answered (not when it is stored), so
a crash between storing a message and reading it loses nothing: whichever process answers the
message reads it. A message may be read more than once that way (a reply round that lost its
lease, a healed chat); this index keeps one plan or reminder, and one confirmation, per message.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "uq_followups_message_id",
        "followups",
        ["message_id"],
        unique=True,
        postgresql_where=sa.text("message_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_followups_message_id", table_name="followups")
