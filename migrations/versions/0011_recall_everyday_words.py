"""recall: everyday words known from the first hour, and rarity measured against the chat's size

On a fresh deployment `recall_common_words` was empty until PostgreSQL had statistics and the hourly
refresh had run, so words like "today", "good" or "time" counted as rare and recall fired on almost
every message. Now a shipped list of everyday words (English, German, and the same words under the
`simple` configuration) is kept in the table for good (`shipped`); the hourly refresh adds and removes
only the words it found itself. And a word must be rare in the chat in proportion to its size: a
weight of 4 (about one message in 55, and never more than a handful in a short chat) instead of 3
with every chat counted as at least 200 messages (any word in fewer than 10 messages).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 19:00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENGLISH = """
today yesterday tomorrow tonight morning evening night afternoon day days week weekend month year time times
good great bad nice fine okay ok well better best worse really very actually just still again always never often
sometimes maybe lot lots much many little bit thing things stuff something anything nothing everything way ways
feel feeling felt think thought know knew want wanted need needed like liked love loved make made get got go went
gone going come came take took see saw look looked say said tell told talk talked try tried keep kept start started
finally first last next new old long short whole hour hours minute minutes home people someone everyone guy guys
friend friends words word happy sad tired busy fun funny hard easy kind sure thanks thank hope glad sorry lately
today's now then back around almost enough also though even yet ever already
"""
GERMAN = """
heute gestern morgen abend nacht nachmittag tag tage woche wochenende monat jahr zeit mal gut toll schlecht schön
wirklich sehr eigentlich einfach noch wieder immer nie oft manchmal vielleicht viel viele bisschen ding sachen etwas
nichts alles fühlen gefühlt denken gedacht wissen wollen brauchen machen gemacht gehen gegangen kommen gekommen sehen
gesehen sagen gesagt erzählen reden versuchen endlich erste letzte nächste neu alt lang kurz stunde stunden minute
minuten hause leute jemand freund freunde freundin wort worte glücklich traurig müde spaß schwer leicht danke hoffe
froh leider gerade jetzt dann schon auch doch
"""
CONFIGS = {"english": ENGLISH, "german": GERMAN, "simple": ENGLISH + GERMAN}

REFRESH = """
    CREATE OR REPLACE FUNCTION aifriend_refresh_common_words() RETURNS integer
    LANGUAGE sql VOLATILE AS $$
        WITH fresh AS (
            SELECT DISTINCT x.elem AS lexeme
              FROM pg_stats AS s,
                   unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS x(elem, freq)
             WHERE s.schemaname = current_schema() AND s.tablename = 'messages' AND s.attname = 'search'
               AND x.elem IS NOT NULL AND x.freq > 0.002
        ), gone AS (
            DELETE FROM recall_common_words AS w
             WHERE NOT w.shipped AND NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.lexeme = w.lexeme)
        ), added AS (
            -- in one order: two replicas refreshing at once wait for each other instead of deadlocking
            INSERT INTO recall_common_words (lexeme) SELECT lexeme FROM fresh ORDER BY lexeme ON CONFLICT DO NOTHING
        )
        SELECT count(*)::integer FROM fresh
    $$
"""
WEIGHTS_BEFORE = "ln((greatest(total, 200) + 1.0) / (n.matches + 0.5))"
WEIGHTS = "ln((greatest(total, 50) + 1.0) / (n.matches + 0.5))"
BEST_BEFORE = "AND x.best >= 3"
BEST = "AND x.best >= 4"


def _revision_0008() -> Any:
    """0008's recall statements, read from its revision (not copied here)."""
    spec = importlib.util.spec_from_file_location(
        "recall_0008", Path(__file__).with_name("0008_recall_without_replanning.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.add_column(
        "recall_common_words",
        sa.Column(
            "shipped",
            sa.Boolean(),
            server_default="false",
            nullable=False,
            comment="a shipped everyday word, kept for good; false: found by the hourly refresh",
        ),
    )
    for config, words in CONFIGS.items():
        op.execute(
            sa.text(
                "INSERT INTO recall_common_words (lexeme, shipped) "
                f"SELECT DISTINCT unnest(tsvector_to_array(to_tsvector('{config}', :words))), true "
                "ON CONFLICT (lexeme) DO UPDATE SET shipped = true"
            ).bindparams(words=" ".join(words.split()))
        )
    op.execute(REFRESH)
    search = str(_revision_0008().SEARCH)
    assert WEIGHTS_BEFORE in search and BEST_BEFORE in search
    op.execute(search.replace(WEIGHTS_BEFORE, WEIGHTS).replace(BEST_BEFORE, BEST))


def downgrade() -> None:
    before = _revision_0008()
    op.execute(str(before.SEARCH))
    op.execute(str(before.REFRESH).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute("DELETE FROM recall_common_words WHERE shipped")
    op.drop_column("recall_common_words", "shipped")
