"""The soak's clients: each a loop of random requests on shared sessions (bench/soak.py),
writing what the service acknowledged into the ledger."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.soak_check import Ledger
from tests.helpers import auth

USER = auth("soak-user")
ADMIN = auth("soak-admin", admin=True)
# (kind, share of the requests): turns and streams most, conversation control often enough
# that it meets them on the same sessions, the rest reads and housekeeping.
MIX = {
    "turn": 0.36,
    "stream": 0.20,
    "edit": 0.07,
    "regenerate": 0.06,
    "switch": 0.05,
    "interrupt": 0.04,
    "get": 0.10,
    "listing": 0.08,
    "delete": 0.01,
    "cleanup": 0.03,
}


async def client_loop(
    bases: list[str], sessions: list[str], ledger: Ledger, stop_at: float, seed: int
) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=60) as http:
        while time.perf_counter() < stop_at:
            session_id = rng.choice(sessions)
            client = Client(http, rng.choice(bases), ledger, rng, ledger.resets[session_id])
            kind = rng.choices(list(MIX), list(MIX.values()))[0]
            try:
                status = await getattr(client, kind)(session_id)
                if status is not None:
                    ledger.outcomes[f"{kind} {status}"] += 1
                    if status == 503:
                        await asyncio.sleep(0.05)  # the database is away: back off a little
            except httpx.HTTPError as exc:
                ledger.outcomes[f"transport {type(exc).__name__}"] += 1


@dataclass
class Client:
    """One request of each kind; each answers its status (None: nothing was sent)."""

    http: httpx.AsyncClient
    base: str
    ledger: Ledger
    rng: random.Random
    resets: int  # the session's deletions when the request began: see Ledger.ack

    def _ack(self, session_id: str, message: dict[str, Any]) -> None:
        self.ledger.ack(session_id, message, self.resets)

    def _path(self, session_id: str, suffix: str = "") -> str:
        return f"{self.base}/api/sessions/{session_id}{suffix}"

    async def turn(self, session_id: str, **extra: Any) -> int:
        started = time.perf_counter()
        response = await self.http.post(
            self._path(session_id, "/messages"),
            json={"content": f"q{self.rng.random():.6f}", **extra},
            headers=USER,
        )
        if response.status_code == 201:
            body = response.json()
            self._ack(session_id, body["user_message"])
            self._answered(session_id, body)
            self.ledger.latencies.append(time.perf_counter() - started)
        return response.status_code

    def _answered(self, session_id: str, body: dict[str, Any]) -> None:
        self._ack(session_id, body["assistant_message"])
        self.ledger.pairs.append((body["user_message"]["id"], body["assistant_message"]["id"]))
        self.ledger.turns += 1

    async def edit(self, session_id: str) -> int:
        """A question under an earlier answer (or, now and then, a new first one)."""
        answers = self.ledger.answers(session_id)
        parent = self.rng.choice(answers) if answers and self.rng.random() < 0.9 else None
        return await self.turn(session_id, parent_id=parent)

    async def interrupt(self, session_id: str) -> int:
        return await self.turn(session_id, if_busy="interrupt")

    async def regenerate(self, session_id: str) -> int | None:
        answers = self.ledger.answers(session_id)
        if not answers:
            return None
        path = self._path(session_id, f"/messages/{self.rng.choice(answers)}/regenerate")
        response = await self.http.post(path, headers=USER)
        if response.status_code == 201:
            self._answered(session_id, response.json())
        return response.status_code

    async def switch(self, session_id: str) -> int | None:
        acked = self.ledger.acked.get(session_id)
        if not acked:
            return None
        target = self.rng.choice(acked)[0]
        response = await self.http.patch(
            self._path(session_id), json={"active_message_id": target}, headers=USER
        )
        return response.status_code

    async def stream(self, session_id: str) -> None:
        """A streamed turn: read to the end, hang up after the first delta, or stop it there
        (and read on to its end)."""
        ending = self.rng.choices(["read", "hang up", "stop"], [0.5, 0.25, 0.25])[0]
        async with self.http.stream(
            "POST",
            self._path(session_id, "/messages"),
            json={"content": f"s{self.rng.random():.6f}", "stream": True},
            headers=USER,
        ) as response:
            if response.status_code != 201:
                self.ledger.outcomes[f"stream {response.status_code}"] += 1
                if response.status_code == 503:
                    await asyncio.sleep(0.05)
                return
            event, start = "", {}
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif not line.startswith("data: "):
                    continue
                elif event == "message_start":
                    start = json.loads(line.removeprefix("data: "))
                    self._ack(session_id, start["user_message"])
                elif event == "delta" and ending == "hang up":
                    self.ledger.outcomes["stream hung up"] += 1
                    return
                elif event == "delta" and ending == "stop":
                    ending = "read"
                    await self._stop(session_id, start["assistant_message_id"])
                elif event == "message_end":
                    end = json.loads(line.removeprefix("data: "))
                    self._answered(session_id, start | end)
                elif event == "error":
                    self.ledger.outcomes["stream error event"] += 1
            self.ledger.outcomes["stream completed"] += 1

    async def _stop(self, session_id: str, message_id: int) -> None:
        stopped = await self.http.post(
            self._path(session_id, f"/messages/{message_id}/stop"), headers=USER
        )
        self.ledger.outcomes[f"stop {stopped.status_code}"] += 1
        if stopped.status_code == 200:
            self._ack(session_id, stopped.json())

    async def get(self, session_id: str) -> int:
        return (await self.http.get(self._path(session_id), headers=USER)).status_code

    async def listing(self, _session_id: str) -> int:
        return (await self.http.get(f"{self.base}/api/sessions", headers=USER)).status_code

    async def delete(self, session_id: str) -> int:
        response = await self.http.delete(self._path(session_id), headers=USER)
        if response.status_code in (204, 404):
            self.ledger.reset(session_id)
        await self.http.post(
            f"{self.base}/api/sessions", json={"session_id": session_id}, headers=USER
        )
        return response.status_code

    async def cleanup(self, _session_id: str) -> int:
        response = await self.http.post(
            f"{self.base}/api/sessions/cleanup", json={"max_age_seconds": 0}, headers=ADMIN
        )
        return response.status_code
