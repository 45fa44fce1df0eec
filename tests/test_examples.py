"""The example scripts run as documented and print what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONWARNINGS": "error::RuntimeWarning"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                          text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_numpy_loop(tmp_path):
    out = _run("numpy_loop.py", str(tmp_path / "run.zarr"))
    assert (tmp_path / "run.zarr" / "zarr.json").exists()
    assert out


def test_analyse_run():
    out = _run("analyse_run.py")  # records its own small MLP run first
    for expected in ("share of channels rejected", "median W1 and KS from init",
                     "detrend=difference", "fc1.weight"):
        assert expected in out


def test_jax_loop(tmp_path):
    pytest.importorskip("jax")
    _run("jax_loop.py", str(tmp_path / "jax.zarr"))
    assert (tmp_path / "jax.zarr" / "zarr.json").exists()
