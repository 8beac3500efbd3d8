"""The start-up heap is frozen out of garbage collection in long-running processes."""

from __future__ import annotations

import gc

from usagewatch.bootstrap import freeze_startup_heap


def test_freeze_moves_what_exists_out_of_collection_and_later_objects_stay_collectable() -> None:
    gc.unfreeze()
    try:
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 0  # modules, classes, ... are in the permanent generation

        class Cycle:
            other: object

        a, b = Cycle(), Cycle()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2  # a cycle made after the freeze is still collected
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
