"""The soak's checker: reads MySQL and proves what the clients were told (bench/soak.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import mysql_connect


@dataclass
class Ledger:
    """What the service acknowledged: message ids by session, and which sessions were reset."""

    acked: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)  # id, role, text
    pairs: list[tuple[int, int]] = field(default_factory=list)  # question and its answer
    deleted: list[int] = field(default_factory=list)  # acknowledged, then deleted on purpose
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    turns: int = 0
    resets: Counter[str] = field(default_factory=Counter)  # deletions of each session
    raced: int = 0  # acknowledged while their session was deleted: stored or not, both right

    def ack(self, session_id: str, message: dict[str, Any], resets: int) -> None:
        """`resets`: the session's deletions when the request was sent."""
        if self.resets[session_id] != resets:
            self.raced += 1
            return
        self.acked.setdefault(session_id, []).append(
            (message["id"], message["role"], message["content"])
        )

    def reset(self, session_id: str) -> None:
        self.resets[session_id] += 1
        self.deleted.extend(message_id for message_id, _, _ in self.acked.pop(session_id, []))

    def answers(self, session_id: str) -> list[int]:
        return [i for i, role, _ in self.acked.get(session_id, []) if role == "assistant"]


def check(database_url: str, ledger: Ledger) -> dict[str, int]:
    """Every acknowledged message stored once and unchanged, in its session; every session a
    valid tree (each message under an earlier one of its session, every answer under a
    question) whose active leaf is one of its messages; every acknowledged
    answer under its question; no reply left in progress; deleted sessions' messages gone."""
    connection = mysql_connect(database_url)
    problems: list[str] = []
    checked = 0
    parent_of: dict[int, int | None] = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM chat_sessions WHERE generating_message_id IS NOT NULL")
        (in_progress,) = cursor.fetchone()
        if in_progress:
            problems.append(f"{in_progress} replies still in progress")
        for session_id, acked in ledger.acked.items():
            cursor.execute(
                "SELECT id, seq, parent_id, role, content, metadata FROM chat_messages"
                " WHERE session_id = %s ORDER BY seq",
                (session_id,),
            )
            rows = cursor.fetchall()
            problems += _tree_problems(session_id, rows)
            cursor.execute(
                "SELECT active_message_id, message_count FROM chat_sessions WHERE session_id = %s",
                (session_id,),
            )
            found = cursor.fetchone()
            if found is not None:
                active, count = found
                if count != len(rows):
                    problems.append(f"{session_id}: message_count {count}, {len(rows)} stored")
                if (active is None) != (not rows) or (rows and active not in {r[0] for r in rows}):
                    problems.append(f"{session_id}: active leaf {active} is not one of its own")
            by_id = {row[0]: row for row in rows}
            for message_id, role, content in acked:
                checked += 1
                row = by_id.get(message_id)
                if row is None:
                    problems.append(f"{session_id}: acknowledged {role} {message_id} is missing")
                elif row[3] != role or row[4] != content:
                    problems.append(f"{session_id}: message {message_id} changed")
            parent_of.update({row[0]: row[2] for row in rows})
        for question, answer in ledger.pairs:
            if answer in parent_of and parent_of[answer] != question:
                problems.append(f"answer {answer} is not under its question {question}")
        if ledger.deleted:
            marks = ",".join(["%s"] * len(ledger.deleted))
            cursor.execute(
                f"SELECT COUNT(*) FROM chat_messages WHERE id IN ({marks})", ledger.deleted
            )
            (survivors,) = cursor.fetchone()
            if survivors:
                problems.append(f"{survivors} messages of deleted sessions are still stored")
    connection.close()
    for line in problems[:20]:
        print("PROBLEM", line)
    return {
        "acknowledged_messages_checked": checked,
        "acknowledged_while_deleted": ledger.raced,
        "deleted_messages_checked": len(ledger.deleted),
        "problems": len(problems),
    }


def _tree_problems(session_id: str, rows: tuple[Any, ...]) -> list[str]:
    problems = []
    role_of = {row[0]: row[3] for row in rows}
    seqs = [row[1] for row in rows]
    if seqs != sorted(set(seqs)):
        problems.append(f"{session_id}: sequence numbers repeat")
    for message_id, seq, parent, role, _content, meta in rows:
        if '"streaming"' in meta:
            problems.append(f"{session_id}: message {seq} still streaming")
        if parent is not None and (parent not in role_of or parent >= message_id):
            problems.append(f"{session_id}: message {message_id} under a stranger {parent}")
        elif role == "assistant" and (parent is None or role_of[parent] != "user"):
            problems.append(f"{session_id}: reply {message_id} is not under a question")
    return problems
