"""The example scripts run as documented and print what they promise."""

from __future__ import annotations

import pytest
from _examples import run_example


def test_numpy_loop(tmp_path):
    out = run_example("numpy_loop.py", str(tmp_path / "run.zarr"))
    assert (tmp_path / "run.zarr" / "zarr.json").exists()
    assert out


def test_analyse_run():
    out = run_example("analyse_run.py")  # records its own small MLP run first
    for expected in ("share of channels rejected", "median W1 and KS from init",
                     "detrend=difference", "fc1.weight"):
        assert expected in out


def test_jax_loop(tmp_path):
    pytest.importorskip("jax")
    run_example("jax_loop.py", str(tmp_path / "jax.zarr"))
    assert (tmp_path / "jax.zarr" / "zarr.json").exists()


def test_init_study(tmp_path):
    """The seed paper's first experiment, quick: outputs, and a table value against numpy."""
    import numpy as np

    import tensorstats as ts

    out = tmp_path / "study"
    stdout = run_example("init_study.py", "--quick", "--out", str(out))
    assert "Zeros shows no dynamics" in stdout
    summary = (out / "summary.md").read_text()
    for section in ("## Convergence", "## Weights, first → last step",
                    "## Pre-activation std by depth and probe", "## Emission and absorption",
                    "## The paper's findings against this run"):
        assert section in summary
    for name in ("loss.png", "weights_orthogonal.png", "features_orthogonal.png",
                 "emission_zeros.png"):
        assert (out / name).stat().st_size > 0
    run = ts.open_run(out / "orthogonal.zarr")
    w = run["weight", "conv2.weight"].values
    row = next(line for line in summary.splitlines()
               if line.startswith("| orthogonal | conv2 |"))
    std = row.split("|")[4].strip()  # "first → last"
    assert std == f"{np.std(w[0]):.4f} → {np.std(w[-1]):.4f}"
    loss = run.scalars["loss"].dropna("step").values
    conv = next(line for line in summary.splitlines() if line.startswith("| orthogonal |"))
    assert conv.split("|")[3].strip() == f"{loss[-20:].mean():.3f}"
    valid = run.probe("valid")
    assert valid["emission", "conv2"].sizes["sample"] == 360  # the whole validation set
