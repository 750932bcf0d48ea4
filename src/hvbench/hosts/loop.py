"""The one place synchronous code drives a host's event loop.

Each host owns an event loop (its SSH connection, its local pipes) that runs only
while hvbench waits on it; everything above ``hosts/`` calls these synchronous
helpers (through AgentChannel and the hosts themselves) and never sees asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def usable(loop: asyncio.AbstractEventLoop) -> bool:
    """A loop we may drive now: not closed, and not already running (a nested call from
    inside one of its own callbacks, or a loop shut down with its host)."""
    return not loop.is_closed() and not loop.is_running()


def run_on(loop: asyncio.AbstractEventLoop,
           work: Coroutine[Any, Any, T] | asyncio.Future[T]) -> T:
    """Run a coroutine (or a task already on ``loop``) to its end."""
    return loop.run_until_complete(work)


def run_quietly(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run ``coroutine`` when the loop can be driven, ignoring what it raises (clean-up
    and housekeeping: a closed loop or a broken stream must not hide the real error)."""
    if not usable(loop):
        coroutine.close()
        return
    # not KeyboardInterrupt: a Ctrl-C while a stream is polled must still stop the run
    with contextlib.suppress(Exception, asyncio.CancelledError):
        loop.run_until_complete(coroutine)


def pause(loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    """Let ``seconds`` pass while the loop's streams flow (log copies, keep-alives)."""
    run_quietly(loop, asyncio.sleep(seconds))


def finish_pending(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel and collect every task an interrupt left suspended on the loop, so none is
    destroyed while pending."""
    if not usable(loop):
        return
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        run_quietly(loop, _gather(pending))


async def _gather(tasks: set[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)
