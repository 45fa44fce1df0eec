"""examples/width_gaussianity.py runs, writes its outputs, and its numbers match numpy/scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _examples import run_example
from scipy import stats

import tensorstats as ts

WIDTHS = (16, 64, 256)  # what --quick runs
INITS = ("kaiming_normal", "kaiming_uniform", "sparse")


def _table(text: str, heading: str) -> list[dict[str, str]]:
    """The first markdown table after ``heading``, as one dict per row."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")),
               len(lines))
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[start:end]]
    header, body = cells[0], cells[2:]   # cells[1] is the alignment row
    return [dict(zip(header, row, strict=True)) for row in body]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("width") / "output"
    stdout = run_example("width_gaussianity.py", "--quick", "--keep-runs", "--out", str(out))
    return out, stdout, (out / "summary.md").read_text()


def test_outputs(quick):
    out, stdout, summary = quick
    for name in ("summary.md", "distributions.png", "kurtosis_vs_width.png",
                 "metrics_vs_width.png"):
        assert (out / name).stat().st_size > 0, name
    for init in INITS:
        for width in WIDTHS:
            assert (out / "runs" / f"{init}-w{width}-s0.zarr" / "zarr.json").exists()
    assert "fitted exponent" in stdout and str(out) in stdout
    for init in INITS:  # one row per width in each init's table
        rows = _table(summary, f"## {init}\n")
        assert [int(r["width"]) for r in rows] == list(WIDTHS)
        assert f"| {init} |" in summary.split("## Does the excess kurtosis")[1]
    assert summary.count("\n1. ") == 1 and "## Conclusions" in summary


def _stored(out: Path, init: str, width: int):
    run = ts.open_run(out / "runs" / f"{init}-w{width}-s0.zarr")
    h = run["feature", "fc2"].values[0].astype(np.float64)          # (unit, sample)
    x = run["input", "fc2"].values[0].astype(np.float64)            # (input unit, sample)
    w = run["weight", "fc2.weight"].values[0].astype(np.float64)    # (unit, input unit)
    return h, x, w


def _stored_bias(out: Path, init: str, width: int) -> np.ndarray:
    run = ts.open_run(out / "runs" / f"{init}-w{width}-s0.zarr")
    return run["weight", "fc2.bias"].values


def _row(summary: str, init: str, width: int) -> dict[str, str]:
    rows = _table(summary, "## All runs")
    (row,) = [r for r in rows if r["init"] == init and int(r["width"]) == width
              and r["seed"] == "0"]
    return row


def test_numbers_match_an_independent_computation(quick):
    out, _, summary = quick
    width = WIDTHS[-1]

    # Excess kurtosis of the widest layer's pre-activations, pooled over units and samples.
    h, x, w = _stored(out, "kaiming_normal", width)
    row = _row(summary, "kaiming_normal", width)
    assert float(row["kurtosis"]) == pytest.approx(stats.kurtosis(h, axis=None), abs=5.1e-5)
    assert int(row["n values"]) == h.size

    # Mean-field ratio: pooled variance over n_in·Var[W]·E[x²] (the biases are zero).
    assert np.all(_stored_bias(out, "kaiming_normal", width) == 0)
    ratio = h.var() / (width * w.var() * np.mean(x ** 2))
    assert float(row["mf ratio"]) == pytest.approx(ratio, abs=5.1e-4)

    # CLT term of the sparse init: κ_W·E_s[Σ_j x⁴] / E_s[Σ_j x²]².
    h, x, w = _stored(out, "sparse", width)
    row = _row(summary, "sparse", width)
    q = (x ** 2).sum(axis=0)
    clt = stats.kurtosis(w, axis=None) * (x ** 4).sum(axis=0).mean() / q.mean() ** 2
    mixture = 3 * q.var() / q.mean() ** 2
    assert float(row["CLT term"]) == pytest.approx(clt, abs=5.1e-5)
    assert float(row["mixture term"]) == pytest.approx(mixture, abs=5.1e-5)


def test_fitted_exponent_matches_the_table(quick):
    _, _, summary = quick
    rows = _table(summary, "## All runs")
    fits = {r["init"]: float(r["fitted exponent b"])
            for r in _table(summary, "## Does the excess kurtosis")}
    for init in INITS:
        mine = [r for r in rows if r["init"] == init]
        widths = np.array([float(r["width"]) for r in mine])
        kurt = np.array([float(r["kurtosis"]) for r in mine])
        slope = np.polyfit(np.log(widths), np.log(np.abs(kurt)), 1)[0]
        assert fits[init] == pytest.approx(slope, abs=0.02), init
