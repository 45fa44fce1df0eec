"""Reading a run while another process writes it: a consistent prefix, growing.

A writer process records steps; the test polls with ``open_run`` and
``Run.refresh`` meanwhile. Every step a poll shows must be complete and
exact, the steps shown must be 0..k with no gap, and they never shrink.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tensorstats as ts

sys.path.insert(0, str(Path(__file__).parent))
from _live_writer import LAYERS, value

pytestmark = pytest.mark.slow

STEPS = 80


def _check_poll(run: ts.Run, seen: dict[str, int]) -> None:
    for layer in run.layers("feature") if "feature" in run.kinds else []:
        da = run["feature", layer]
        steps = da["step"].values.tolist()
        assert steps == list(range(len(steps))), steps  # a prefix, no gap
        assert len(steps) >= seen.get(layer, 0)  # never shrinks
        seen[layer] = len(steps)
        got = da.values
        for i, step in enumerate(steps):
            assert (got[i] == value(layer, step)).all(), (layer, step)
    if "loss" in run.scalars:
        loss = run.scalars["loss"].dropna("step")
        n = loss.sizes["step"]
        assert loss["step"].values.tolist() == list(range(n))
        np.testing.assert_array_equal(loss.values, 1.0 / (np.arange(n) + 1))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_reader_sees_a_growing_consistent_prefix(tmp_path, mode):
    path = str(tmp_path / "live.zarr")
    writer = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(__file__), "_live_writer.py"), path,
         str(STEPS), mode], stdout=subprocess.PIPE, text=True)
    seen: dict[str, int] = {}
    polls = partial = 0
    run = None
    try:
        deadline = time.monotonic() + 120
        while writer.poll() is None and time.monotonic() < deadline:
            if not os.path.exists(os.path.join(path, "zarr.json")):
                time.sleep(0.01)
                continue
            if run is None or polls % 2:
                run = ts.open_run(path)
            else:
                run.refresh()
            _check_poll(run, seen)
            polls += 1
            partial += 0 < min(seen.values(), default=0) < STEPS
        assert writer.wait(timeout=60) == 0
        assert writer.stdout.read().strip() == "done"
    finally:
        writer.kill()
    assert partial >= 3, f"only {partial} polls saw a run in progress ({polls} polls)"
    final = ts.open_run(path)
    _check_poll(final, {})
    assert all(final["feature", layer].sizes["step"] == STEPS for layer in LAYERS)
    run.refresh()  # an old handle catches up too
    assert run["feature", "a"].sizes["step"] == STEPS
