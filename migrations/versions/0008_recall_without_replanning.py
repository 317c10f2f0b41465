"""recall in one planned statement, with the common words kept in a table

`aifriend_recall_search` spent most of its time on two things that did not depend on the
message: it parsed PostgreSQL's column statistics (`pg_stats.most_common_elems`, a thousand
words as text) to find the common ones, and it planned a fresh `count(*)` for each word
(`EXECUTE`), then the final search: most of the database time of a reply whose chat has
history. Now the common words are a table, `recall_common_words`, filled from the same
statistics by `aifriend_refresh_common_words()` (here, and hourly by the bot), and the search
is one SQL statement that PostgreSQL plans once per connection and keeps, written so that
the kept plan always enters through the (chat_id, search) index (docs/performance.md).
The words it looks up, their weights, and what it recalls are the same.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 15:10:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = "(bigint, regconfig, text, bigint, bigint, integer, integer)"

REFRESH = """
    CREATE FUNCTION aifriend_refresh_common_words() RETURNS integer
    LANGUAGE sql VOLATILE AS $$
        WITH fresh AS (
            SELECT DISTINCT x.elem AS lexeme
              FROM pg_stats AS s,
                   unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS x(elem, freq)
             WHERE s.schemaname = current_schema() AND s.tablename = 'messages' AND s.attname = 'search'
               AND x.elem IS NOT NULL AND x.freq > 0.002
        ), gone AS (
            DELETE FROM recall_common_words AS w WHERE NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.lexeme = w.lexeme)
        ), added AS (
            -- in one order: two replicas refreshing at once wait for each other instead of deadlocking
            INSERT INTO recall_common_words (lexeme) SELECT lexeme FROM fresh ORDER BY lexeme ON CONFLICT DO NOTHING
        )
        SELECT count(*)::integer FROM fresh
    $$
"""

# What 0006 did, in one statement: each word of the new message, stemmed, unless common; of
# those the eight longest; each weighed by how rare it is in this chat (a word in 200 of its
# messages or more says nothing); lines sharing a word of weight 3 or more, best first.
SEARCH = """
    CREATE OR REPLACE FUNCTION aifriend_recall_search(chat bigint, config regconfig, words text, since bigint,
                                                      before bigint, total integer, wanted integer)
    RETURNS TABLE (id bigint, text text, created_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE AS $$
        WITH candidates AS (
            SELECT quote_literal(replace(t.lexeme, chr(92), ''))::tsquery AS term
              FROM unnest(tsvector_to_array(to_tsvector(config, coalesce(words, '')))) AS t(lexeme)
             WHERE NOT EXISTS (SELECT 1 FROM recall_common_words AS c WHERE c.lexeme = t.lexeme)
             ORDER BY length(t.lexeme) DESC, t.lexeme
             LIMIT 8
        ), weighed AS (
            SELECT c.term, ln((greatest(total, 200) + 1.0) / (n.matches + 0.5)) AS weight
              FROM candidates AS c,
                   LATERAL (SELECT count(*) AS matches
                              FROM (SELECT 1 FROM messages AS m
                                     WHERE m.chat_id = chat AND m.search @@ c.term LIMIT 200) AS capped) AS n
             WHERE n.matches BETWEEN 1 AND 199
        )
        SELECT m.id, m.text, m.created_at
          FROM messages AS m,
               LATERAL (SELECT sum(w.weight) AS score, max(w.weight) AS best
                          FROM weighed AS w WHERE m.search @@ w.term) AS x
         WHERE m.chat_id = chat
           AND m.search @@ (SELECT string_agg(w.term::text, ' | ')::tsquery FROM weighed AS w)
           -- `+ 0`: the plan is made once for any ids, and a range on an unknown id looks narrow
           -- enough to walk the primary key through the whole chat; the word index is the way in
           AND m.recallable AND m.id + 0 > since AND m.id + 0 < before AND m.answered_at IS NOT NULL
           AND x.best >= 3
         ORDER BY x.score DESC, m.id DESC
         LIMIT wanted
    $$
"""


def upgrade() -> None:
    op.create_table(
        "recall_common_words",
        sa.Column("lexeme", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("lexeme", name=op.f("pk_recall_common_words")),
        comment="Words too common across all messages to say what to recall (in more than 0.2 % of them, "
        "from PostgreSQL's column statistics), refreshed hourly by aifriend_refresh_common_words().",
    )
    op.execute(REFRESH)
    op.execute(
        "COMMENT ON FUNCTION aifriend_refresh_common_words() IS "
        "'Fills recall_common_words from pg_stats (run after ANALYZE; the bot runs it hourly); returns how many.'"
    )
    op.execute("SELECT aifriend_refresh_common_words()")
    op.execute(SEARCH)
    op.execute(
        f"COMMENT ON FUNCTION aifriend_recall_search{SIGNATURE} IS "
        "'A chat''s older user messages (ids between since and before) sharing its rarest words with `words`, "
        "best first. Words in recall_common_words are not looked up; the rest are counted in the chat, capped at 200.'"
    )


def downgrade() -> None:
    op.execute(_search_of_0006())
    op.execute("DROP FUNCTION aifriend_refresh_common_words()")
    op.drop_table("recall_common_words")


def _search_of_0006() -> str:
    """0006's plpgsql search, under the name 0007 gave it (read from 0006 rather than copied here)."""
    spec = importlib.util.spec_from_file_location("recall_0006", Path(__file__).with_name("0006_memory_recall.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    body = next(statement for statement in module.FUNCTIONS if "CREATE FUNCTION aifriend_recall(" in statement)
    return body.replace("CREATE FUNCTION aifriend_recall(", "CREATE OR REPLACE FUNCTION aifriend_recall_search(", 1)
