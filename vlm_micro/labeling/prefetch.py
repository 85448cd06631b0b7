"""Run a producer iterator in a background thread, a bounded number of items ahead."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Iterable, Iterator, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_DONE = object()
_POLL_S = 0.1  # how often a blocked producer checks whether the consumer stopped


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of ``items``, produced in a background thread up to ``depth`` ahead.

    The producer (for example reading and preprocessing tile batches) overlaps with the
    consumer's work (model inference). An exception in the producer is raised in the
    consumer at the position where it happened. When the consumer stops early, the
    producer stops after its current item.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(_Failure(error))

    thread = threading.Thread(target=produce, name="vlm-micro-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
