"""memory that retrieves: full-text search over the user's messages, /memory forget

Every user text message gets a `tsvector` (language from the user's Telegram language where
PostgreSQL has a configuration for it, `simple` otherwise), filled by a trigger so every path
that stores a message gets it, and a GIN index over (chat_id, search) (btree_gin, a contrib
extension that managed PostgreSQL services offer), so a search touches one chat's entries only. `recallable` is false for what
`/memory forget` removed from the friend's memory; `memory_forgets` records each such request.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 10:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Telegram's language_code (an IETF tag) to a text search configuration shipped with PostgreSQL 13+.
CONFIGS = {
    "ar": "arabic",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "fi": "finnish",
    "fr": "french",
    "ga": "irish",
    "hu": "hungarian",
    "id": "indonesian",
    "it": "italian",
    "lt": "lithuanian",
    "nb": "norwegian",
    "ne": "nepali",
    "nl": "dutch",
    "nn": "norwegian",
    "no": "norwegian",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
}
_CASES = " ".join(f"WHEN '{code}' THEN '{config}'::regconfig" for code, config in CONFIGS.items())

FUNCTIONS = [
    f"""
    CREATE FUNCTION aifriend_text_config(language_code text) RETURNS regconfig
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE lower(split_part(coalesce(language_code, ''), '-', 1)) {_CASES} ELSE 'simple'::regconfig END
    $$
    """,
    "COMMENT ON FUNCTION aifriend_text_config(text) IS "
    "'The text search configuration for a Telegram language code: its language where PostgreSQL has one, else simple.'",
    """
    CREATE FUNCTION aifriend_recall(chat bigint, config regconfig, words text, since bigint, before bigint,
                                    total integer, wanted integer)
    RETURNS TABLE (id bigint, text text, created_at timestamptz)
    LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
    DECLARE
        term tsquery;
        matches integer;
        terms tsquery[] := '{}';
        common text[];
        weights float8[] := '{}';
    BEGIN
        -- Each word, stemmed, weighed by how rare it is in this chat; in 200 messages or more it
        -- says nothing about what to recall. A line is recalled only if one word it shares weighs
        -- at least 3 (found in at most a twentieth of the chat's messages, or 10 of a short chat's;
        -- common words do not add up to that): a recurring topic is in the recent turns and the notebook already, and a note
        -- on every reply would cost the model server's prefix cache for nothing. EXECUTE plans each lookup for its own word: an index
        -- scan for a rare one, a scan that stops at 200 for a common one.
        -- Words in more than 0.2 % of all messages (PostgreSQL's own statistics of the column, from
        -- ANALYZE) are not looked up at all: too common to say anything, and costly to count.
        SELECT coalesce(array_agg(x.elem), '{}') INTO common
          FROM pg_stats AS s,
               unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS x(elem, freq)
         WHERE s.schemaname = current_schema() AND s.tablename = 'messages' AND s.attname = 'search'
           AND x.elem IS NOT NULL AND x.freq > 0.002;
        -- Of the rest, at most the eight longest words of a long message (long words are the rare ones).
        FOR term IN SELECT quote_literal(replace(t.lexeme, chr(92), ''))::tsquery
                      FROM unnest(tsvector_to_array(to_tsvector(config, coalesce(words, '')))) AS t(lexeme)
                     WHERE NOT t.lexeme = ANY (common)
                     ORDER BY length(t.lexeme) DESC, t.lexeme LIMIT 8
        LOOP
            EXECUTE 'SELECT count(*) FROM (SELECT 1 FROM messages WHERE chat_id = $1 AND search @@ $2 LIMIT 200) AS s'
               INTO matches USING chat, term;
            IF matches BETWEEN 1 AND 199 THEN
                terms := terms || term;
                weights := weights || ln((greatest(total, 200) + 1.0) / (matches + 0.5));
            END IF;
        END LOOP;
        IF cardinality(terms) = 0 THEN
            RETURN;
        END IF;
        RETURN QUERY EXECUTE
            'SELECT s.id, s.text, s.created_at FROM (
                 SELECT m.id, m.text, m.created_at, w.score, w.best
                   FROM messages AS m,
                        LATERAL (SELECT sum(x.weight) AS score, max(x.weight) AS best
                                   FROM unnest($5, $6) AS x(term, weight) WHERE m.search @@ x.term) AS w
                  WHERE m.chat_id = $1 AND m.search @@ $2 AND m.recallable AND m.id > $3 AND m.id < $4
                    AND m.answered_at IS NOT NULL) AS s
              WHERE s.best >= 3
              ORDER BY s.score DESC, s.id DESC
              LIMIT $7'
            USING chat, (SELECT string_agg(t::text, ' | ') FROM unnest(terms) AS t)::tsquery, since, before,
                  terms, weights, wanted;
    END
    $$
    """,
    "COMMENT ON FUNCTION aifriend_recall(bigint, regconfig, text, bigint, bigint, integer, integer) IS "
    "'A chat''s older user messages (ids between since and before) sharing the rarest words with `words`, "
    "best first: what the friend recalls for a new message. One capped, indexed lookup per word.'",
    """
    CREATE FUNCTION aifriend_message_search() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.search := to_tsvector(
            aifriend_text_config((SELECT u.language_code FROM conversations AS c JOIN users AS u ON u.id = c.user_id
                                   WHERE c.chat_id = NEW.chat_id)),
            NEW.text);
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER messages_search BEFORE INSERT ON messages
       FOR EACH ROW WHEN (NEW.role = 'user' AND NEW.kind = 'text') EXECUTE FUNCTION aifriend_message_search()
    """,
]

VIEWS = {
    "chat_memory": (
        "One row per chat: what the friend remembers (the notebook, day summaries, messages it can recall) "
        "and what the user asked it to forget with /memory forget (the words, when, how much went).",
        """
        SELECT c.chat_id, c.memory_summary AS notebook, c.summarized_through_id,
               (SELECT count(*) FROM daily_summaries AS d WHERE d.chat_id = c.chat_id) AS day_summaries,
               (SELECT max(d.day) FROM daily_summaries AS d WHERE d.chat_id = c.chat_id) AS last_day_summarized,
               (SELECT count(*) FROM messages AS m
                 WHERE m.chat_id = c.chat_id AND m.search IS NOT NULL AND m.recallable) AS recallable_messages,
               (SELECT count(*) FROM messages AS m WHERE m.chat_id = c.chat_id AND NOT m.recallable)
                   AS forgotten_messages,
               (SELECT array_agg(f.words ORDER BY f.id) FROM memory_forgets AS f WHERE f.chat_id = c.chat_id)
                   AS forgotten_words,
               (SELECT max(f.created_at) FROM memory_forgets AS f WHERE f.chat_id = c.chat_id) AS last_forgotten_at
          FROM conversations AS c
        """,
    ),
}


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "memory_forgets",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("words", sa.Text(), nullable=False, comment="what the user asked to forget, as written"),
        sa.Column(
            "messages", sa.Integer(), nullable=False, comment="messages no longer recalled or shown to the model"
        ),
        sa.Column("notebook_lines", sa.Integer(), nullable=False, comment="sentences removed from the rolling summary"),
        sa.Column("day_lines", sa.Integer(), nullable=False, comment="sentences removed from day summaries"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"],
            ["conversations.chat_id"],
            name=op.f("fk_memory_forgets_chat_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_forgets")),
        comment="Each /memory forget a user confirmed: the words and how much of the memory they removed.",
    )
    op.create_index("ix_memory_forgets_chat_id", "memory_forgets", ["chat_id"], unique=False)
    op.add_column(
        "messages",
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            nullable=True,
            comment="user text messages: the words recall searches, in the user's language (filled by a trigger)",
        ),
    )
    op.add_column(
        "messages",
        sa.Column(
            "recall_note",
            sa.Text(),
            nullable=True,
            comment="user messages: the older lines recall put before this message in the prompt that answered it, kept so later prompts show the turn the same way",
        ),
    )
    op.add_column(
        "messages",
        sa.Column(
            "recallable",
            sa.Boolean(),
            server_default="true",
            nullable=False,
            comment="false once /memory forget removed it from what the friend recalls and shows the model; operators still see it until /forget",
        ),
    )
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")  # chat_id inside the GIN index: one chat's words only
    op.create_index(
        "ix_messages_chat_id_search",
        "messages",
        ["chat_id", "search"],
        unique=False,
        postgresql_using="gin",
        postgresql_where=sa.text("search IS NOT NULL"),
        postgresql_with={"fastupdate": "off"},
    )
    # ### end Alembic commands ###
    for statement in FUNCTIONS:
        op.execute(statement)
    op.execute(
        """
        UPDATE messages AS m
           SET search = to_tsvector(aifriend_text_config(u.language_code), m.text)
          FROM conversations AS c JOIN users AS u ON u.id = c.user_id
         WHERE c.chat_id = m.chat_id AND m.role = 'user' AND m.kind = 'text'
        """
    )
    for name, (comment, query) in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query}")
        op.execute(f"COMMENT ON VIEW {name} IS '{comment}'")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW {name}")
    op.execute("DROP TRIGGER messages_search ON messages")
    op.execute("DROP FUNCTION aifriend_message_search()")
    op.execute("DROP FUNCTION aifriend_recall(bigint, regconfig, text, bigint, bigint, integer, integer)")
    op.execute("DROP FUNCTION aifriend_text_config(text)")
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_index(
        "ix_messages_chat_id_search",
        table_name="messages",
        postgresql_using="gin",
        postgresql_where=sa.text("search IS NOT NULL"),
    )
    op.execute("DROP EXTENSION IF EXISTS btree_gin")
    op.drop_column("messages", "recallable")
    op.drop_column("messages", "recall_note")
    op.drop_column("messages", "search")
    op.drop_index("ix_memory_forgets_chat_id", table_name="memory_forgets")
    op.drop_table("memory_forgets")
    # ### end Alembic commands ###
