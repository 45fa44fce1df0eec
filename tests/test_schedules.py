"""Schedules against brute-force definitions."""

import numpy as np
import pytest

from tensorstats.collect.schedules import as_schedule, at, every, logspaced


@pytest.mark.parametrize(("n", "start"), [(1, 0), (3, 0), (10, 5), (7, 100)])
def test_every_matches_range(n, start):
    s = every(n, start=start)
    assert [t for t in range(400) if s(t)] == list(range(start, 400, n))


def test_every_rejects_bad_n():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            every(bad)


def test_at_and_as_schedule():
    assert [t for t in range(20) if at([3, 17, 50])(t)] == [3, 17]
    assert as_schedule(4)(8) and not as_schedule(4)(9)
    assert as_schedule({1, 2})(2)
    f = lambda t: t == 9  # noqa: E731
    assert as_schedule(f) is f
    with pytest.raises(TypeError, match="a schedule is"):
        as_schedule("often")


@pytest.mark.parametrize(("stop", "num", "start"), [(1000, 12, 0), (10_000, 50, 0), (500, 30, 100)])
def test_logspaced_dense_early_sparse_late(stop, num, start):
    steps = sorted(logspaced(stop, num=num, start=start).steps)
    assert steps[0] == start and steps[-1] == stop
    assert len(steps) <= num + 1
    gaps = np.diff(steps)
    assert np.all(gaps >= 1)
    # log spacing: the gaps grow (up to rounding), so late logging is sparse
    assert gaps[-1] > gaps[0]
    assert np.all(np.diff(np.log(np.array(steps[1:]) - start)) > 0)
    # reference: geometric points between 1 and stop - start, rounded
    ref = {start} | {start + int(v) for v in np.rint(np.geomspace(1, stop - start, num))}
    assert set(steps) == ref
