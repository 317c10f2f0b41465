"""recall looks only when there is something to find

`aifriend_recall` ran its whole search (the column statistics, one planned count per word) for
every reply, also in a chat whose every message is still among the recent turns, where nothing
can be recalled: most chats in their first days. The search keeps its body under the name
`aifriend_recall_search`; `aifriend_recall` now asks first, with one probe of the (chat_id, id)
index, whether the chat has an answered user message older than the recent turns.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 12:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = "(bigint, regconfig, text, bigint, bigint, integer, integer)"


def upgrade() -> None:
    op.execute(f"ALTER FUNCTION aifriend_recall{SIGNATURE} RENAME TO aifriend_recall_search")
    op.execute(
        """
        CREATE FUNCTION aifriend_recall(chat bigint, config regconfig, words text, since bigint, before bigint,
                                        total integer, wanted integer)
        RETURNS TABLE (id bigint, text text, created_at timestamptz)
        LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM messages AS m
                            WHERE m.chat_id = chat AND m.id > since AND m.id < before
                              AND m.role = 'user' AND m.recallable AND m.answered_at IS NOT NULL) THEN
                RETURN;  -- every line of the chat is still in the recent turns
            END IF;
            RETURN QUERY SELECT * FROM aifriend_recall_search(chat, config, words, since, before, total, wanted);
        END
        $$
        """
    )
    op.execute(
        f"COMMENT ON FUNCTION aifriend_recall{SIGNATURE} IS "
        "'What the friend recalls for a new message: aifriend_recall_search, run only when the chat has "
        "answered user messages older than the recent turns (ids between since and before).'"
    )


def downgrade() -> None:
    op.execute(f"DROP FUNCTION aifriend_recall{SIGNATURE}")
    op.execute(f"ALTER FUNCTION aifriend_recall_search{SIGNATURE} RENAME TO aifriend_recall")
