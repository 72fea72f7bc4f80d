"""settle_heap: start-up's objects leave the garbage collector's walks (in a child process: freezing
the test session's own heap would keep its garbage for good)."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import gc, json, weakref
from cogplane.processes import settle_heap

class Node:
    pass

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

kept = [Node() for _ in range(20000)]  # start-up objects that live on
gone = cycle()  # start-up garbage: only a collection frees a cycle
before = len(gc.get_objects())
settle_heap(collect={collect})
after = len(gc.get_objects())
print(json.dumps({{"freed": gone() is None, "frozen": gc.get_freeze_count(), "before": before, "after": after}}))
"""


def _run(collect: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(collect=collect)], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_settle_heap_frees_start_up_garbage_then_freezes_the_rest() -> None:
    result = _run(collect=True)
    assert result["freed"]  # the collection ran before the freeze
    assert result["frozen"] >= 20000  # what lives on is frozen ...
    assert result["after"] < result["before"] - 20000  # ... and out of the collector's walks


def test_settle_heap_without_collecting_freezes_as_it_is() -> None:
    result = _run(collect=False)
    assert not result["freed"]  # no collection: the Lambda init pays none
    assert result["frozen"] >= 20000
    assert result["after"] < result["before"] - 20000
