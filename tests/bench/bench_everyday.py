"""Recall and prefix reuse in a long everyday chat, from a fresh database.

Run on demand:  python -m tests.bench.bench_everyday [--messages 180]
One user talks about a dozen everyday topics that keep coming round, in plain words ("today",
"yesterday", "a good time"), with a 2,048-token model (the TGI emulator), recall on, on a fresh
database (the hourly common-words refresh has not run). Prints: the share of each reply prompt
that is a prefix of the chat's previous reply prompt (what a prefix cache reuses), how many replies
carried a recall note, the prompt sizes, and how many summaries (folds) were written.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from app.emulators.echo import echo
from app.emulators.tgi import TGIEmulator
from migrations import schema as migrate
from storage.database import connect
from storage.rows import UserInfo
from tests.bench.roundtrips import prompt_tokens, shared_prefix, tokenize
from tests.helpers import RecordingOutbox, build_friend
from tests.postgres import fetch, fresh_database, server_url

TOPICS = [
    (
        "work",
        [
            "Work was long today, the new manager keeps changing the plan",
            "Had a good day at work for once, the team laughed a lot",
            "Yesterday at work I spent the whole time in meetings",
        ],
    ),
    (
        "running",
        [
            "Went for a run this morning, my knees feel better",
            "I ran five kilometres today without stopping",
            "Running in the rain yesterday was a good time actually",
        ],
    ),
    (
        "sister",
        [
            "My sister called me today, she sounds tired",
            "I had lunch with my sister yesterday, we talked for hours",
            "My sister wants us to go away together some day",
        ],
    ),
    (
        "cooking",
        [
            "I tried cooking a curry tonight and it turned out good",
            "Cooking for one person feels a bit sad some days",
            "Yesterday I burned the rice again, no words",
        ],
    ),
    (
        "sleep",
        [
            "I slept badly again, woke up at four",
            "Finally a good night of sleep today",
            "I keep scrolling my phone in bed instead of sleeping",
        ],
    ),
    (
        "plants",
        [
            "My basil plant is dying and I don't know why",
            "I repotted the monstera today, it looks happy",
            "The tomatoes on the balcony finally turned red",
        ],
    ),
    (
        "reading",
        [
            "I started a new novel today, it's about a lighthouse",
            "Reading before bed helps me more than I thought",
            "I finished the lighthouse book yesterday, what an ending",
        ],
    ),
    (
        "money",
        [
            "Rent went up again this month, I'm worried",
            "I made a budget today, it felt good to see the numbers",
            "Spent too much on takeaway this week, no more words",
        ],
    ),
    (
        "friends",
        [
            "Saw my old friend Tom today, it was a good time",
            "I feel like my friends are drifting away lately",
            "We played board games at Lea's place yesterday",
        ],
    ),
    (
        "music",
        [
            "I've been practising the guitar every day this week",
            "Went to a small concert yesterday, the singer was amazing",
            "I learned a new song on the guitar today",
        ],
    ),
    (
        "weather",
        [
            "It's grey and cold again today",
            "Finally some sun today, I sat outside for an hour",
            "The wind yesterday was crazy, a tree fell on our street",
        ],
    ),
    (
        "mum",
        [
            "My mum's knee surgery went fine, she's resting",
            "Visited my mum today, she made her famous soup",
            "My mum keeps asking when I'll visit again",
        ],
    ),
]


async def main(options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = server_url(Path(tmp))
        async with fresh_database(base) as url:
            await asyncio.to_thread(migrate.upgrade, url)
            tgi = TGIEmulator(max_input_tokens=options.model_tokens - 1, max_total_tokens=options.model_tokens)
            await tgi.start()
            database = await connect(url, pool_size=4)
            friend = build_friend(database, tgi)
            outbox = RecordingOutbox(database)
            chat, user = 9001, UserInfo(9001, language_code="en")
            try:
                for n in range(options.messages):
                    _, lines = TOPICS[n % len(TOPICS)]
                    text = lines[(n // len(TOPICS)) % len(lines)]
                    await friend.handle_text(chat, user, text, outbox, update_id=900_000 + n)
                    await friend.background.drain()
                notes = await fetch(
                    url,
                    "SELECT count(*) FILTER (WHERE recall_note LIKE '%<recalled>%'), count(*) FROM messages "
                    "WHERE chat_id = $1 AND role = 'user' AND answered_at IS NOT NULL",
                    chat,
                )
            finally:
                await friend.background.stop(0)
                await friend.model.close()
                await database.close()
                await tgi.stop()
    marker = friend.persona.prompts.summary[:40]
    replies = [
        b for p, b in tgi.requests if p == "/v1/chat/completions" and not b["messages"][0]["content"].startswith(marker)
    ]
    folds = sum(
        1 for p, b in tgi.requests if p == "/v1/chat/completions" and b["messages"][0]["content"].startswith(marker)
    )
    shares, cached, lengths = [], [], []
    previous: list[str] | None = None
    answered_previous: list[str] = []
    for body in replies:
        tokens = prompt_tokens(body)
        if previous is not None:
            shares.append(shared_prefix(previous, tokens) / len(tokens))
            cached.append(shared_prefix(answered_previous, tokens) / len(tokens))
        lengths.append(len(tokens))
        previous = tokens
        # What a prefix cache holds after the reply: the prompt and the tokens the model wrote.
        answered_previous = tokens + [t for t, _, _ in tokenize(echo(body["messages"], body["max_tokens"]) + "<|end|>")]
    ordered = sorted(shares)
    with_note, answered = notes[0][0], notes[0][1]
    print(
        f"{options.messages} messages, {len(TOPICS)} topics, {options.model_tokens:,}-token model, recall on, fresh database:\n"
        f"  prefix share of the previous prompt: mean {statistics.mean(shares):.1%}, p10 {ordered[len(ordered) // 10]:.1%}, "
        f"min {ordered[0]:.1%}\n"
        f"  prefix share of the previous prompt and its reply (what a prefix cache holds): "
        f"mean {statistics.mean(cached):.1%}\n"
        f"  recall notes on {with_note} of {answered} answered messages ({with_note / answered:.0%})\n"
        f"  prompt tokens: mean {statistics.mean(lengths):.0f}, max {max(lengths)}; summaries written: {folds}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=180)
    parser.add_argument("--model-tokens", type=int, default=2048, help="the model's context length")
    asyncio.run(main(parser.parse_args()))
