"""GapGuard: a fetch that skips offsets is re-read from the first missing one, never committed past at once."""

from __future__ import annotations

import pytest

from ondas.kafka import GapGuard

pytestmark = pytest.mark.unit


class Msg:
    def __init__(self, offset: int, topic: str = "t.device-data", partition: int = 0) -> None:
        self._o, self._t, self._p = offset, topic, partition

    def offset(self) -> int:
        return self._o

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p


def offsets(msgs) -> list[int]:
    return [m.offset() for m in msgs]


def test_consecutive_offsets_pass_whole() -> None:
    g = GapGuard()
    batch, gap = g.cut([Msg(0), Msg(1), Msg(2)])
    assert (offsets(batch), gap) == ([0, 1, 2], None)
    batch, gap = g.cut([Msg(3)])
    assert (offsets(batch), gap) == ([3], None)


def test_a_skip_cuts_the_batch_and_asks_to_read_again_from_the_first_missing_offset() -> None:
    g = GapGuard()
    batch, gap = g.cut([Msg(0), Msg(1), Msg(4), Msg(5)])
    assert offsets(batch) == [0, 1]
    assert gap == (("t.device-data", 0), 2)
    # the re-read finds the records that were missing
    batch, gap = g.cut([Msg(2), Msg(3), Msg(4), Msg(5)])
    assert (offsets(batch), gap) == ([2, 3, 4, 5], None)


def test_a_gap_still_there_after_the_rereads_is_real_and_passed_over() -> None:
    g = GapGuard(max_rereads=2)
    assert g.cut([Msg(0)])[1] is None
    assert g.cut([Msg(3)]) == ([], (("t.device-data", 0), 1))
    assert g.cut([Msg(3)]) == ([], (("t.device-data", 0), 1))
    batch, gap = g.cut([Msg(3), Msg(4)])
    assert (offsets(batch), gap) == ([3, 4], None)


def test_partitions_are_tracked_apart_and_a_new_assignment_starts_fresh() -> None:
    g = GapGuard()
    g.cut([Msg(0, partition=0), Msg(10, partition=1)])
    batch, gap = g.cut([Msg(1, partition=0), Msg(11, partition=1)])
    assert gap is None and len(batch) == 2
    g.reset()
    batch, gap = g.cut([Msg(50, partition=0)])  # another member moved the partition on meanwhile
    assert (offsets(batch), gap) == ([50], None)
