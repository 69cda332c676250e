"""The distributor's index of unclaimed requests (unit): distribution order, changes, stale
heap entries, collapsing by source stamps, and the work it counts."""

from __future__ import annotations

from buildyard.master.distributor.distributor import _Index, _Steps
from buildyard.master.model.buildrequests import BuildRequest


def _request(brid: int, *, builderid: int = 1, priority: int = 0, at: int = 0) -> BuildRequest:
    return BuildRequest(
        id=brid,
        buildsetid=100 + brid,
        builderid=builderid,
        buildername="b",
        priority=priority,
        submitted_at=at,
        complete=False,
        complete_at=None,
        results=None,
        waited_for=False,
        claimed=False,
        claimed_at=None,
        claimed_by_masterid=None,
    )


def test_order_is_priority_then_age_then_id_and_follows_changes() -> None:
    index = _Index(_Steps())
    for r in (
        _request(1, at=5),
        _request(2, at=3),
        _request(3, priority=2, at=9),
        _request(4, at=3),
    ):
        index.add(r)
    queue = index.by_builder[1]
    assert [r.id for r in queue.first(4, set())] == [3, 2, 4, 1]
    assert [r.id for r in queue.ordered()] == [3, 2, 4, 1]
    assert queue.oldest() == 3
    # a priority change reorders; a discarded request is gone; a skipped one is left out
    index.add(_request(1, priority=5, at=5))
    index.discard(2)
    assert [r.id for r in queue.first(3, set())] == [1, 3, 4]
    assert [r.id for r in queue.first(2, {1})] == [3, 4]
    assert queue.oldest() == 3
    index.discard(4)
    assert queue.oldest() == 5
    # re-adding a discarded request leaves no duplicate behind
    index.add(_request(4, at=3))
    index.add(_request(4, at=3))
    assert [r.id for r in queue.first(10, set())] == [1, 3, 4]
    for brid in (1, 3, 4):
        index.discard(brid)
    assert 1 not in index.by_builder
    assert len(index) == 0


def test_a_request_moving_builder_leaves_the_old_one() -> None:
    index = _Index(_Steps())
    index.add(_request(1, builderid=1))
    index.add(_request(1, builderid=2))
    assert list(index.by_builder) == [2]
    assert index.get(1) is not None


def test_collapsing_finds_the_same_stamps_only() -> None:
    index = _Index(_Steps())
    for brid in range(1, 5):
        index.add(_request(brid))
    queue = index.by_builder[1]
    assert queue.unresolved == {1, 2, 3, 4}
    a = frozenset({("", "main", "r1", "repo", "", False)})
    b: frozenset[tuple[object, ...]] = frozenset()
    for brid, stamps in ((1, a), (2, b), (3, a), (4, a)):
        queue.set_stamps(brid, stamps)
    assert not queue.unresolved
    assert queue.by_stamps[a] == {1, 3, 4}
    index.discard(3)
    assert queue.by_stamps[a] == {1, 4}
    index.discard(2)
    assert b not in queue.by_stamps


def test_stale_entries_are_compacted_and_the_work_stays_per_request() -> None:
    steps = _Steps()
    index = _Index(steps)
    for brid in range(1, 1001):
        index.add(_request(brid, at=brid))
    queue = index.by_builder[1]
    # taking the first request and dropping it, again and again, costs the same each time
    costs = []
    for _ in range(100):
        before = steps.n
        [first] = queue.first(1, set())
        index.discard(first.id)
        costs.append(steps.n - before)
    assert max(costs) <= 3
    assert len(queue) == 900
    assert len(queue._by_order) <= 2 * len(queue) + 64
