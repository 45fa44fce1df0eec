"""open_runs stacks runs along `run`, aligned on step labels; Run has a readable repr."""

from __future__ import annotations

import numpy as np
import pytest

import tensorstats as ts


def _write(path, steps, scale, shape=(4, 3), attrs=None, scalar_steps=None):
    with ts.Recorder(path, attrs=attrs) as rec:
        for s in steps:
            rec.record("weight", "conv1.weight", np.full(shape, scale * s, np.float32), step=s)
        for s in scalar_steps if scalar_steps is not None else steps:
            rec.record_scalar("loss", scale / (s + 1), step=s)


def test_open_runs_aligns_by_label_and_pads_nan(tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    _write(a, [0, 10, 20, 30], 1.0, attrs={"init": "kaiming"})
    _write(b, [0, 20, 40], 2.0, attrs={"init": "xavier"})
    runs = ts.open_runs({"kaiming": a, "xavier": b})
    da = runs["weight", "conv1.weight"]
    assert da.dims == ("run", "step", "channel", "dim_1")
    assert list(da["run"].values) == ["kaiming", "xavier"]
    np.testing.assert_array_equal(da["step"].values, [0, 10, 20, 30, 40])
    # brute force: each run's value at each step label, NaN where it did not log
    for r, steps, scale in (("kaiming", [0, 10, 20, 30], 1.0), ("xavier", [0, 20, 40], 2.0)):
        for s in [0, 10, 20, 30, 40]:
            got = da.sel(run=r, step=s).values
            want = np.full((4, 3), scale * s if s in steps else np.nan, np.float32)
            np.testing.assert_array_equal(got, want)
    sc = runs.scalars
    assert sc["loss"].dims == ("run", "step")
    np.testing.assert_allclose(sc["loss"].sel(run="xavier").values,
                               [2.0, np.nan, 2 / 21, np.nan, 2 / 41])
    assert runs.attrs["xavier"]["init"] == "xavier"
    assert runs.kinds == ["weight"] and runs.layers("weight") == ["conv1.weight"]
    assert "kaiming" in repr(runs)


def test_open_runs_from_list_and_same_steps_keep_dtype(tmp_path):
    paths = [tmp_path / "r1.zarr", tmp_path / "r2.zarr"]
    for i, p in enumerate(paths):
        _write(p, [0, 1], float(i + 1))
    runs = ts.open_runs(paths)
    assert runs.names == ["r1", "r2"]
    da = runs["weight", "conv1.weight"]
    assert da.dtype == np.float32
    np.testing.assert_array_equal(da.values[:, 1, 0, 0], [1.0, 2.0])


def test_open_runs_int_series_with_gaps_become_float(tmp_path):
    for name, steps in (("a", [0, 1]), ("b", [1])):
        with ts.Recorder(tmp_path / f"{name}.zarr") as rec:
            for s in steps:
                rec.record("input", "tokens", np.full(3, s + 1, np.int64), step=s)
    da = ts.open_runs([tmp_path / "a.zarr", tmp_path / "b.zarr"])["input", "tokens"]
    np.testing.assert_array_equal(da.values[:, :, 0], [[1, 2], [np.nan, 2]])


def test_open_runs_errors(tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    _write(a, [0], 1.0)
    _write(b, [0], 1.0, shape=(5, 3))
    runs = ts.open_runs({"a": a, "b": b})
    with pytest.raises(ValueError, match=r"'channel': 5.*run 'b'.*'channel': 4.*run 'a'"):
        runs["weight", "conv1.weight"]
    with pytest.raises(KeyError, match=r"missing from runs \['a', 'b'\]"):
        runs["grad", "conv1.weight"]
    with pytest.raises(ValueError, match="two runs would be named 'a'"):
        ts.open_runs([a, tmp_path / "x" / ".." / "a.zarr"])
    with pytest.raises(ValueError, match="at least one run"):
        ts.open_runs({})


def test_run_repr_lists_kinds_layers_steps_sizes(tmp_path):
    p = tmp_path / "a.zarr"
    with ts.Recorder(p, attrs={"init": "orthogonal"}) as rec:
        for s in (0, 10, 20):
            rec.record("weight", "fc.weight", np.zeros((512, 1024), np.float32), step=s)
            rec.record("feature", "conv1", np.zeros((8, 16, 4, 4)), step=s, channel_axis=1)
            rec.record_scalar("loss", 1.0, step=s)
    text = repr(ts.open_run(p))
    for piece in ("a.zarr", "init='orthogonal'", "weight (1 layers)", "feature (1 layers)",
                  "fc.weight", "(step: 3, channel: 512, dim_1: 1024)", "float32", "6.0 MiB",
                  "steps 0…20", "loss (3, steps 0…20)", "conv1"):
        assert piece in text, piece


def test_run_reads_under_processes_and_distributed(tmp_path):
    """Lazy arrays compute the same under threads, processes and a distributed Client."""
    import dask
    from dask.distributed import Client, LocalCluster

    p = tmp_path / "a.zarr"
    rng = np.random.default_rng(1)
    data = rng.standard_normal((5, 16, 40))  # 5 KiB a step: a chunk per step
    with ts.Recorder(p) as rec:
        for s in range(5):
            rec.record("weight", "w", data[s], step=s)
    run = ts.open_run(p, chunk_bytes=2 * 16 * 40 * 8)  # 2 steps per dask chunk
    da = run["weight", "w"]
    assert da.chunks[0] == (2, 2, 1)
    expected = data.mean(axis=(1, 2))
    for scheduler in ("threads", "processes", "synchronous"):
        with dask.config.set(scheduler=scheduler):
            np.testing.assert_allclose(da.mean(("channel", "dim_1")).values, expected)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        np.testing.assert_allclose(da.mean(("channel", "dim_1")).compute().values, expected)
