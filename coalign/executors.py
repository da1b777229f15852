"""Adapters that turn pools and clients into a ``map_fn(func, iterable) -> list``.

coalign never starts or closes a pool: the caller owns it. Every adapter returns the results in input
order, so serial and parallel runs give identical answers. The function handed to a ``map_fn`` must be
picklable (a module-level function or a `functools.partial` of one); the adapters themselves are never
pickled.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(2) as ex:
    ...     executor_map(ex)(abs, [-1, 2, -3])
    [1, 2, 3]
"""

import math
import os
from collections.abc import Callable, Iterable

__all__ = ["MapFn", "client_map", "executor_map", "pool_map", "serial_map"]

MapFn = Callable[[Callable, Iterable], Iterable]


def serial_map(func, iterable) -> list:
    """The serial default, as a list."""
    return list(map(func, iterable))


def _chunksize(n_items: int, n_workers: int) -> int:
    return max(1, math.ceil(n_items / max(1, n_workers)))


def pool_map(pool, n_workers: int | None = None) -> MapFn:
    """``map_fn`` over a `multiprocessing.pool.Pool`, one chunk of tasks per worker (arguments are pickled
    once per chunk, not once per task)."""
    workers = n_workers or getattr(pool, "_processes", None) or os.cpu_count() or 1

    def mapper(func, iterable):
        items = list(iterable)
        return pool.map(func, items, chunksize=_chunksize(len(items), workers))

    return mapper


def executor_map(executor, n_workers: int | None = None) -> MapFn:
    """``map_fn`` over a `concurrent.futures.Executor` (thread or process pool), chunked per worker."""
    workers = n_workers or getattr(executor, "_max_workers", None) or os.cpu_count() or 1

    def mapper(func, iterable):
        items = list(iterable)
        return list(executor.map(func, items, chunksize=_chunksize(len(items), workers)))

    return mapper


def client_map(client) -> MapFn:
    """``map_fn`` over a `dask.distributed.Client` (a LocalCluster or a remote scheduler).

    Tasks are submitted with ``pure=False`` so large array arguments are not hashed for task keys.
    """

    def mapper(func, iterable):
        return client.gather(client.map(func, list(iterable), pure=False))

    return mapper
