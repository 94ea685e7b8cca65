"""Bounds on what clients can make the service ask the feature store: a token bucket and single-flight calls.

Both are thread-safe (misses are looked up in worker threads) and take an injectable monotonic clock so tests
can drive time by hand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up (starts full)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1 (got {rate}, {burst})")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend one token if there is one; False (and nothing spent) otherwise."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class SingleFlight(Generic[T]):
    """Concurrent calls for the same key share one execution: the first caller runs ``fn``, the others wait
    for its result (or its exception)."""

    def __init__(self) -> None:
        self._calls: dict[str, Future[T]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._calls)

    def do(self, key: str, fn: Callable[[], T], timeout: float | None = None) -> T:
        """``fn()``'s result, computed once for every caller that asks for ``key`` while it runs.

        Waiting callers give up after ``timeout`` seconds with ``TimeoutError`` (None: wait as long as it runs).
        """
        with self._lock:
            existing = self._calls.get(key)
            leader = existing is None
            future = self._calls[key] = Future() if existing is None else existing
        if not leader:
            return future.result(timeout)
        try:
            result = fn()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            with self._lock:
                del self._calls[key]
