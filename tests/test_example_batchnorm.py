"""examples/batchnorm_shift.py runs, writes what it promises, and its drift numbers are right.

The example is run once (``--quick``) as a subprocess, as a user would run
it. Its printed median W1 drifts are then recomputed here from the stored
run alone, with plain NumPy and ``scipy.stats.wasserstein_distance`` per
channel, without ``ts.shift``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from _examples import run_example
from scipy import stats

import tensorstats as ts

LAYERS = ("conv1", "conv2", "conv3", "fc1")
ARMS = {"no BN": "plain.zarr", "BN": "bn.zarr"}
TENSORS = {"input": "input", "pre-activation": "feature"}
FIGURES = ("drift_ks_input.png", "drift_ks_preactivation.png", "drift_w1rel_input.png",
           "drift_w1rel_preactivation.png", "drift_w1rel_input_training_batches.png",
           "drift_w1rel_input_eval_probe.png", "moments.png", "normality_ks_distance.png",
           "normality_kurtosis.png", "loss.png")


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, str, str]:
    out = tmp_path_factory.mktemp("batchnorm") / "out"
    stdout = run_example("batchnorm_shift.py", "--quick", "--out", str(out))
    return out, stdout, (out / "summary.md").read_text()


def _table(summary: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    """The markdown table whose header row starts with ``header_start``: header, rows."""
    lines = summary.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[at + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return [cell.strip() for cell in lines[at].strip("|").split("|")], rows


def _drift_table(summary: str) -> dict[tuple[str, str, str], dict[str, str]]:
    header, rows = _table(summary, "| layer | tensor | arm | W1 first")
    return {(r[0], r[1], r[2]): dict(zip(header, r, strict=True)) for r in rows}


def test_outputs(quick):
    out, stdout, summary = quick
    for name in (*FIGURES, "summary.md"):
        path = out / name
        assert path.exists(), name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for store in ARMS.values():
        assert (out / store / "zarr.json").exists()
    assert str(out.resolve()) in stdout
    assert "## Conclusions from this run" in summary
    drift = _drift_table(summary)
    for layer in LAYERS:
        for tensor in TENSORS:
            for arm in ARMS:
                assert (layer, tensor, arm) in drift, (layer, tensor, arm)
    _, normality = _table(summary, "| layer | arm | step | n |")
    assert {(r[0], r[1]) for r in normality} == {(ly, a) for ly in LAYERS for a in ARMS}
    _, training = _table(summary, "| arm | mean loss")
    assert [r[0] for r in training] == list(ARMS)
    assert all(0 <= float(r[3]) <= 1 for r in training)
    # conv1's input is the images: on the fixed batch it cannot drift
    assert all(float(drift["conv1", "input", arm]["W1 last"]) == 0 for arm in ARMS)


def _median_w1(out: Path, store: str, kind: str, layer: str, steps: tuple[int, int]) -> float:
    """Median over channels of scipy's W1 between two logged steps of the fixed batch."""
    run = ts.open_run(out / store).probe("valid_trainmode")
    da = run[kind, layer].transpose("step", "channel", ...)
    before, after = (np.asarray(da.sel(step=s).values, dtype=np.float64) for s in steps)
    before = before.reshape(before.shape[0], -1)
    after = after.reshape(after.shape[0], -1)
    assert before.shape[1] <= 5000  # ts.shift used every value, no subsample (max_samples)
    return float(np.median([stats.wasserstein_distance(a, b)
                            for a, b in zip(after, before, strict=True)]))


def _agrees(printed: str, value: float) -> bool:
    """``printed`` (4 significant digits) is ``value`` rounded, within half a last digit."""
    if value == 0:
        return float(printed) == 0
    half = 0.5 * 10.0 ** (math.floor(math.log10(abs(value))) - 3)
    return abs(float(printed) - value) <= half * (1 + 1e-9)


@pytest.mark.parametrize(("layer", "tensor", "arm", "column"), [
    ("conv2", "input", "no BN", "W1 last"),        # subsampled: 4096 fixed positions
    ("conv3", "pre-activation", "BN", "W1 first"),
    ("fc1", "input", "BN", "W1 last"),             # 1024 channels of 128 values, in full
])
def test_w1_drift_matches_scipy(quick, layer, tensor, arm, column):
    out, _, summary = quick
    first = re.search(r"First interval = steps (\d+)→(\d+)", summary)
    last = re.search(r"last interval = steps (\d+)→(\d+)", summary)
    assert first and last
    steps = tuple(int(s) for s in (first if column == "W1 first" else last).groups())
    printed = _drift_table(summary)[layer, tensor, arm][column]
    reference = _median_w1(out, ARMS[arm], TENSORS[tensor], layer, steps)
    assert reference > 0
    assert _agrees(printed, reference), (printed, reference)
