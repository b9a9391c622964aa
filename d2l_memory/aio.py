"""Async iteration over the memory layer's blocking iterators (token streams), for asyncio callers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

T = TypeVar("T")


async def iterate_in_thread(iterator: Iterator[T]) -> AsyncIterator[T]:
    """Yield `iterator`'s items, each ``next`` run in a worker thread so the event loop stays free.

    The caller owns `iterator` and closes it (also when it stops early).
    """
    done = object()
    while True:
        item = await asyncio.to_thread(next, iterator, done)
        if item is done:
            return
        yield item
