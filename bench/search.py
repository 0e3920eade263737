"""Search in a big database: GET /api/search for one user with 100,000 messages among
1,000,000, against a plain `LIKE '%q%'` scan of the same user's messages, in the same run.

    .venv/bin/python -m bench.search [--messages 1000000] [--mine 100000] [--repeats 40]

In a fresh MariaDB database (TEST_DATABASE_URL or the local server), `session-service serve`:
MESSAGES messages in sessions of SESSION_LENGTH, MINE of them the bench user's (the rest
spread over OTHER_USERS users), a sixth written in Chinese, the rest in English-like words of
a Zipf-distributed vocabulary; each with the search terms a turn would write (computed by the
service's own code; written in bulk, the terms' key built afterwards). Then, for
each kind of query (a common word, a rare word, two words, a word only other users have, two
and four Chinese characters cut from the user's own messages), REPEATS queries through the
API (the first page, 20 hits) and the same through the `LIKE` scan (SQL alone, on a second
connection): medians and 99th percentiles. Then the index's size, its rows per message and
the CPU to compute a message's terms. Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

import aiomysql
import httpx

from bench.common import aiomysql_options, scratch_database, service, write_results
from session_service.auth import DEV_USER_ID
from session_service.db.search_terms import owner_key, terms
from tests.fakes.openai import FakeLLM

SESSION_LENGTH = 50
OTHER_USERS = 900
VOCABULARY = 20_000
CHINESE_SHARE = 6  # one message in six
BATCH = 2_000
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
# 2,500 of the CJK Unified Ideographs, the first ones most used (a stand-in for real text)
HAN = [chr(0x4E00 + i * 7) for i in range(2_500)]
# The scan search would be without an index: every part of the query in the text.
LIKE = (
    "SELECT m.id FROM chat_messages AS m JOIN chat_sessions AS s"
    " ON s.session_id = m.session_id WHERE s.user_id = %s{parts} ORDER BY m.id DESC LIMIT 21"
)
LIKE_PART = " AND LOWER(m.content) LIKE %s"


class Corpus:
    """Deterministic text: English-like words and Chinese characters, Zipf-distributed."""

    def __init__(self, seed: int = 7) -> None:
        self.random = random.Random(seed)
        words: set[str] = set()
        while len(words) < VOCABULARY:
            words.add("".join(self.random.choices(SYLLABLES, k=self.random.randint(1, 4))))
        self.words = sorted(words, key=lambda word: (len(word), word))
        # cumulative weights, computed once (random.choices would sum them on every call)
        self.word_weights = list(accumulate(1 / rank for rank in range(1, VOCABULARY + 1)))
        self.han_weights = list(accumulate(1 / rank for rank in range(1, len(HAN) + 1)))

    def message(self, index: int) -> str:
        if index % CHINESE_SHARE == 0:
            count = self.random.randint(10, 40)
            return "".join(self.random.choices(HAN, cum_weights=self.han_weights, k=count)) + "。"
        count = self.random.randint(5, 30)
        return (
            " ".join(self.random.choices(self.words, cum_weights=self.word_weights, k=count)) + "."
        )


async def load(database_url: str, total: int, mine: int) -> dict[str, float]:
    """Sessions, messages and their terms, in bulk; seconds taken and CPU per message's terms."""
    corpus = Corpus()
    sessions = total // SESSION_LENGTH
    my_sessions = set(random.Random(1).sample(range(sessions), mine // SESSION_LENGTH))
    connection = await aiomysql.connect(**aiomysql_options(database_url), autocommit=False)
    started, terms_cpu = time.perf_counter(), 0.0
    base = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=365)
    async with connection.cursor() as cursor:
        await cursor.execute("SET foreign_key_checks = 0, unique_checks = 0")
        await cursor.execute("ALTER TABLE search_terms DROP PRIMARY KEY")  # rebuilt sorted
        message_id = 0
        for first in range(0, sessions, BATCH // SESSION_LENGTH):
            session_rows, message_rows, term_rows = [], [], []
            for number in range(first, min(sessions, first + BATCH // SESSION_LENGTH)):
                user = DEV_USER_ID if number in my_sessions else f"user-{number % OTHER_USERS}"
                session_id = f"s{number:07d}"
                at = base + timedelta(minutes=number)
                title = " ".join(corpus.random.choices(corpus.words[:2000], k=3))
                session_rows.append((session_id, user, title, message_id + SESSION_LENGTH, at, at))
                owner = owner_key(user)
                for seq in range(1, SESSION_LENGTH + 1):
                    message_id += 1
                    text = corpus.message(message_id)
                    role = "user" if seq % 2 else "assistant"
                    parent = message_id - 1 if seq > 1 else None
                    stamp = at + timedelta(seconds=seq)
                    message_rows.append((message_id, session_id, seq, parent, role, text, stamp))
                    cpu = time.process_time()
                    term_rows += [(message_id, term, owner) for term in terms(text)]
                    terms_cpu += time.process_time() - cpu
            await cursor.executemany(
                "INSERT INTO chat_sessions (session_id, user_id, title, context, message_count,"
                " active_message_id, created_at, updated_at, titled, archived, pinned)"
                " VALUES (%s, %s, %s, '{}', 50, %s, %s, %s, 1, 0, 0)",
                session_rows,
            )
            await cursor.executemany(
                "INSERT INTO chat_messages (id, session_id, seq, parent_id, role, content,"
                " timestamp, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, '{}')",
                message_rows,
            )
            for start in range(0, len(term_rows), 10_000):
                await cursor.executemany(
                    "INSERT INTO search_terms (message_id, term, owner) VALUES (%s, %s, %s)",
                    term_rows[start : start + 10_000],
                )
            await connection.commit()
        indexing = time.perf_counter()
        await cursor.execute("ALTER TABLE search_terms ADD PRIMARY KEY (owner, term, message_id)")
        await cursor.execute("ANALYZE TABLE chat_messages, search_terms")
    connection.close()
    return {
        "load_seconds": indexing - started,
        "index_build_seconds": time.perf_counter() - indexing,
        "terms_cpu_us_per_message": terms_cpu / total * 1e6,
    }


async def queries(database_url: str, count: int) -> dict[str, list[str]]:
    """`count` queries of each kind, from what is stored."""
    connection = await aiomysql.connect(**aiomysql_options(database_url))
    picker = random.Random(3)
    corpus = Corpus()
    async with connection.cursor() as cursor:
        await cursor.execute(
            "SELECT m.content FROM chat_messages AS m JOIN chat_sessions AS s"
            " ON s.session_id = m.session_id WHERE s.user_id = %s AND m.id %% %s = 0"
            " ORDER BY m.id LIMIT 2000",
            (DEV_USER_ID, CHINESE_SHARE),
        )
        chinese = [row[0] for row in await cursor.fetchall()]
    connection.close()
    common, rare = corpus.words[:10], corpus.words[-2000:]

    def cut(length: int) -> Callable[[], str]:
        def one() -> str:
            text = picker.choice(chinese)
            start = picker.randrange(len(text) - length)
            return text[start : start + length]

        return one

    makers: dict[str, Callable[[], str]] = {
        "en_common_word": lambda: picker.choice(common),
        "en_rare_word": lambda: picker.choice(rare),
        "en_two_words": lambda: f"{picker.choice(common)} {picker.choice(corpus.words[500:2000])}",
        "en_absent_word": lambda: f"zq{picker.choice(SYLLABLES)}",
        "zh_two_chars": cut(2),
        "zh_four_chars": cut(4),
    }
    return {kind: [make() for _ in range(count)] for kind, make in makers.items()}


async def measure(base: str, database_url: str, asked: dict[str, list[str]]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    connection = await aiomysql.connect(**aiomysql_options(database_url), autocommit=True)
    async with httpx.AsyncClient(base_url=base, timeout=120) as http, connection.cursor() as cursor:
        for kind, texts in asked.items():
            index_ms, like_ms, hits = [], [], []
            for text in texts:
                started = time.perf_counter()
                response = await http.get("/api/search", params={"q": text, "limit": 20})
                index_ms.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
                hits.append(sum(1 for item in response.json()["items"] if item["message"]))
                started = time.perf_counter()
                parts = text.lower().split()
                await cursor.execute(
                    LIKE.format(parts=LIKE_PART * len(parts)),
                    (DEV_USER_ID, *(f"%{part}%" for part in parts)),
                )
                await cursor.fetchall()
                like_ms.append((time.perf_counter() - started) * 1000)
            figures[kind] = {
                "search_p50_ms": statistics.median(index_ms),
                "search_p99_ms": _p99(index_ms),
                "like_p50_ms": statistics.median(like_ms),
                "like_p99_ms": _p99(like_ms),
                "like_over_search_p50": statistics.median(like_ms) / statistics.median(index_ms),
                "message_hits_per_page_median": statistics.median(hits),
            }
    connection.close()
    return figures


async def sizes(database_url: str) -> dict[str, float]:
    connection = await aiomysql.connect(**aiomysql_options(database_url))
    async with connection.cursor() as cursor:
        await cursor.execute(
            "SELECT table_name, data_length + index_length, table_rows FROM"
            " information_schema.tables WHERE table_schema = DATABASE()"
            " AND table_name IN ('chat_messages', 'search_terms')"
        )
        found = {name: (int(size), int(rows)) for name, size, rows in await cursor.fetchall()}
        await cursor.execute("SELECT COUNT(*) FROM search_terms")
        (term_rows,) = await cursor.fetchone()
        await cursor.execute("SELECT COUNT(*), SUM(LENGTH(content)) FROM chat_messages")
        messages, text_bytes = await cursor.fetchone()
    connection.close()
    return {
        "messages": messages,
        "message_text_mb": int(text_bytes) / 1e6,
        "messages_table_mb": found["chat_messages"][0] / 1e6,
        "search_terms_mb": found["search_terms"][0] / 1e6,
        "search_term_rows": term_rows,
        "term_rows_per_message": term_rows / messages,
        "index_bytes_per_message": found["search_terms"][0] / messages,
    }


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--mine", type=int, default=100_000, help="the bench user's messages")
    parser.add_argument("--repeats", type=int, default=40, help="queries of each kind")
    args = parser.parse_args()
    llm = FakeLLM().start()
    try:
        with scratch_database() as database_url, service(database_url, llm.base_url) as (base, _):
            loaded = asyncio.run(load(database_url, args.messages, args.mine))
            asked = asyncio.run(queries(database_url, args.repeats))
            asyncio.run(measure(base, database_url, {k: v[:3] for k, v in asked.items()}))  # warm
            figures = asyncio.run(measure(base, database_url, asked))
            stored = asyncio.run(sizes(database_url))
    finally:
        llm.stop()
    print(
        f"{args.messages:,} messages, {args.mine:,} of them the user's; {args.repeats} queries each"
    )
    print(
        f"{'query':18}{'search p50':>12}{'p99':>9}{'LIKE p50':>11}{'p99':>9}{'ratio':>8}{'hits':>6}"
    )
    for kind, row in figures.items():
        print(
            f"{kind:18}{row['search_p50_ms']:12.2f}{row['search_p99_ms']:9.2f}"
            f"{row['like_p50_ms']:11.2f}{row['like_p99_ms']:9.2f}"
            f"{row['like_over_search_p50']:8.1f}{row['message_hits_per_page_median']:6.0f}"
        )
    print(
        f"index: {stored['search_terms_mb']:.0f} MB for {stored['messages']:,} messages "
        f"({stored['message_text_mb']:.0f} MB of text, table {stored['messages_table_mb']:.0f} MB)"
        f": {stored['term_rows_per_message']:.1f} terms, "
        f"{stored['index_bytes_per_message']:.0f} bytes per message; terms computed in "
        f"{loaded['terms_cpu_us_per_message']:.1f} µs CPU per message"
    )
    results = {
        "messages": args.messages,
        "mine": args.mine,
        "repeats": args.repeats,
        "queries": figures,
        "index": stored,
        "load": loaded,
    }
    write_results("search", results)
    return results


if __name__ == "__main__":
    main()
