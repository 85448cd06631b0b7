"""Background prefetching of batches."""

from __future__ import annotations

import threading
import time

import pytest

from vlm_micro.labeling.prefetch import prefetch


def test_prefetch_yields_all_in_order():
    assert list(prefetch(iter(range(10)), depth=2)) == list(range(10))


def test_prefetch_runs_producer_in_other_thread():
    names = []

    def produce():
        for index in range(3):
            names.append(threading.current_thread().name)
            yield index

    assert list(prefetch(produce())) == [0, 1, 2]
    assert set(names) == {"vlm-micro-prefetch"}


def test_prefetch_reraises_producer_error():
    def produce():
        yield 1
        raise ValueError("broken tile")

    results = []
    with pytest.raises(ValueError, match="broken tile"):
        for item in prefetch(produce()):
            results.append(item)
    assert results == [1]


def test_prefetch_bounded_ahead():
    produced = []

    def produce():
        for index in range(100):
            produced.append(index)
            yield index

    iterator = prefetch(produce(), depth=2)
    assert next(iterator) == 0
    time.sleep(0.3)
    # One item consumed, two in the queue and at most one blocked in put().
    assert len(produced) <= 4
    iterator.close()


def test_prefetch_stops_producer_on_early_exit():
    def produce():
        index = 0
        while True:
            yield index
            index += 1

    for item in prefetch(produce(), depth=2):
        if item == 3:
            break
    assert not any(thread.name == "vlm-micro-prefetch" for thread in threading.enumerate())


def test_prefetch_invalid_depth():
    with pytest.raises(ValueError):
        list(prefetch(iter([]), depth=0))
