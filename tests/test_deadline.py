"""PieceTimeout: what `asyncio.timeout(seconds)` entered anew for every piece of a stream does,
on the real event loop's clock, kept short (each test well under a second)."""

from __future__ import annotations

import asyncio
import time

import pytest

from session_service.llm.deadline import PieceTimeout

SLACK = 0.15  # how late past its deadline a timeout may come on a busy test machine


async def test_pieces_within_the_deadline_may_run_longer_than_it_in_all() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    pieces = 0
    async with PieceTimeout(0.15) as timeout:
        while loop.time() - began < 0.4:
            await asyncio.sleep(0.05)
            timeout.came()
            pieces += 1
    assert loop.time() - began >= 0.4  # well past 0.15 in all, and no TimeoutError
    assert pieces >= 7


async def test_a_gap_after_the_last_piece_times_out_that_long_after_it() -> None:
    loop = asyncio.get_running_loop()
    seconds = 0.15
    came_at: list[float] = []
    with pytest.raises(TimeoutError):  # 3 pieces, 0.15 s in all: the first deadline moved on
        await _stream(seconds, pieces=3, every=0.05, then_wait=1, came_at=came_at)
    assert len(came_at) == 3
    assert seconds <= loop.time() - came_at[-1] < seconds + SLACK
    this = asyncio.current_task()
    assert this is not None
    assert this.cancelling() == 0  # the deadline's own cancellation was taken back


async def test_no_piece_at_all_times_out_that_long_after_the_block_began() -> None:
    loop = asyncio.get_running_loop()
    seconds = 0.1
    began = loop.time()
    with pytest.raises(TimeoutError):
        await _stream(seconds, pieces=0, every=0, then_wait=1, came_at=[])
    assert seconds <= loop.time() - began < seconds + SLACK


async def _stream(
    seconds: float, pieces: int, every: float, then_wait: float, came_at: list[float]
) -> None:
    """`pieces` pieces `every` seconds apart, then a wait for one that does not come."""
    loop = asyncio.get_running_loop()
    async with PieceTimeout(seconds) as timeout:
        for _ in range(pieces):
            await asyncio.sleep(every)
            came_at.append(loop.time())  # read before the piece notes its own time
            timeout.came()
        await asyncio.sleep(then_wait)


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    entered = asyncio.Event()

    async def stream() -> None:
        async with PieceTimeout(0.3):
            entered.set()
            await asyncio.sleep(1)

    task = asyncio.create_task(stream())
    await entered.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_cancellation_from_outside_at_the_deadline_stays_a_cancellation() -> None:
    """The deadline's timer and another task both cancel the stream in one turn of the loop:
    the outside cancellation is not swallowed into a TimeoutError."""

    async def stream() -> None:
        async with PieceTimeout(0.05):
            _hold_up_the_loop(0.1)  # past the deadline before its timer could run
            await asyncio.sleep(1)

    task = asyncio.create_task(stream())
    # Due before the stream's deadline: when the loop wakes, this sleep ends first, then the
    # deadline's timer cancels the stream, then this task cancels it too, before it resumes.
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_block_that_ends_in_time_leaves_no_timer_behind() -> None:
    async def stream() -> str:
        async with PieceTimeout(0.05) as timeout:
            for _ in range(4):  # 0.12 s: the timer has moved itself on at least once
                await asyncio.sleep(0.03)
                timeout.came()
        await asyncio.sleep(0.15)  # past any deadline the block had
        return "done"

    task = asyncio.create_task(stream())
    assert await task == "done"
    assert not task.cancelled()
    assert task.cancelling() == 0


async def test_a_block_that_fails_in_time_leaves_no_timer_behind() -> None:
    async def stream() -> str:
        with pytest.raises(ValueError, match="own error"):
            await _fail_at_once()
        await asyncio.sleep(0.15)  # past the deadline the block had
        return "done"

    task = asyncio.create_task(stream())
    assert await task == "done"
    assert task.cancelling() == 0


async def _fail_at_once() -> None:
    async with PieceTimeout(0.05):
        raise ValueError("the stream's own error")


def _hold_up_the_loop(seconds: float) -> None:
    """Keep the running event loop from running anything else, as CPU-bound work would."""
    time.sleep(seconds)
