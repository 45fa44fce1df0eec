"""Bad input: a clear error naming layer, step and expectation; nothing written is lost."""

from __future__ import annotations

import os

import numpy as np
import pytest

import tensorstats as ts
from conftest import tree_snapshot


@pytest.fixture
def rec_with_data(store):
    rec = ts.Recorder(store)
    rec.record("weight", "conv1.weight", np.ones((4, 3)), step=0)
    rec.record("weight", "conv1.weight", np.ones((4, 3)) * 2, step=5)
    rec.record_scalar("loss", 1.0, step=5)
    yield rec
    rec.close()


def _assert_still_readable(store):
    run = ts.open_run(store)
    da = run["weight", "conv1.weight"]
    np.testing.assert_array_equal(da["step"].values, [0, 5])
    np.testing.assert_array_equal(da.values[:, 0, 0], [1, 2])
    np.testing.assert_array_equal(run.scalars["loss"].values, [1.0])


def test_shape_change(rec_with_data, store):
    with pytest.raises(ValueError) as e:
        rec_with_data.record("weight", "conv1.weight", np.ones((4, 4)), step=6)
    msg = str(e.value)
    assert "'conv1.weight'" in msg and "step 6" in msg and "(4, 4)" in msg and "(4, 3)" in msg
    _assert_still_readable(store)
    rec_with_data.record("weight", "conv1.weight", np.ones((4, 3)) * 3, step=6)  # still usable


@pytest.mark.parametrize("bad_step", [5, 4, 0, -1])
def test_step_not_increasing(rec_with_data, store, bad_step):
    with pytest.raises(ValueError, match=rf"'conv1.weight' at step {bad_step}.*last step .*\(5\)"):
        rec_with_data.record("weight", "conv1.weight", np.ones((4, 3)), step=bad_step)
    with pytest.raises(ValueError, match=r"scalar 'loss'.*last step .*\(5\)"):
        rec_with_data.record_scalar("loss", 0.5, step=min(bad_step, 5))
    _assert_still_readable(store)


@pytest.mark.parametrize("bad_step", [1.0, "3", None, True, 2**70])
def test_step_must_be_integer(rec_with_data, bad_step):
    with pytest.raises((TypeError, ValueError), match="step"):
        rec_with_data.record("weight", "conv1.weight", np.ones((4, 3)), step=bad_step)


@pytest.mark.parametrize("value", [np.array(["a", "b"]), np.array([object(), 1], dtype=object),
                                   np.array([1 + 2j]), "text", {"a": 1}, [[1, 2], [3]],
                                   np.array(["2020-01-01"], dtype="datetime64[D]")])
def test_non_numeric(rec_with_data, store, value):
    with pytest.raises(TypeError) as e:
        rec_with_data.record("weight", "emb", value, step=9)
    assert "'emb'" in str(e.value) and "step 9" in str(e.value)
    _assert_still_readable(store)
    assert "emb" not in ts.open_run(store).layers("weight")


def test_non_numeric_scalar(rec_with_data, store):
    with pytest.raises(TypeError, match="scalar 'acc' at step 6.*one real number"):
        rec_with_data.record_scalar("acc", [1.0, 2.0], step=6)
    with pytest.raises(TypeError, match="scalar 'acc'"):
        rec_with_data.record_scalar("acc", "high", step=6)
    _assert_still_readable(store)


@pytest.mark.parametrize("axis", [2, -3, 10])
def test_channel_axis_out_of_range(rec_with_data, store, axis):
    with pytest.raises(ValueError) as e:
        rec_with_data.record("feature", "fc", np.ones((8, 4)), step=1, channel_axis=axis)
    msg = str(e.value)
    assert f"channel_axis={axis}" in msg and "'fc'" in msg and "step 1" in msg
    assert "(8, 4)" in msg and "[-2, 1]" in msg
    _assert_still_readable(store)


def test_channel_axis_change_and_dtype_kind_change(rec_with_data):
    with pytest.raises(ValueError, match="channel_axis 1 differs from 0"):
        rec_with_data.record("weight", "conv1.weight", np.ones((3, 4)).T, step=6, channel_axis=1)
    rec_with_data.record("weight", "ints", np.ones(3, np.int32), step=0)
    with pytest.raises(TypeError, match="'ints' at step 1: dtype float64 cannot be stored.*int32"):
        rec_with_data.record("weight", "ints", np.ones(3) * 0.5, step=1)


def test_bad_dims(rec_with_data):
    x = np.ones((2, 3, 4))
    with pytest.raises(ValueError, match="names 1 axes, but the tensor has 2"):
        rec_with_data.record("feature", "f", x, step=0, channel_axis=1, dims=("a",))
    with pytest.raises(ValueError, match="'step' is reserved"):
        rec_with_data.record("feature", "f", x, step=0, channel_axis=1, dims=("step", "b"))
    with pytest.raises(ValueError, match="duplicates"):
        rec_with_data.record("feature", "f", x, step=0, channel_axis=1, dims=("a", "a"))


def test_empty_names(rec_with_data):
    with pytest.raises(ValueError, match="layer must be a non-empty string"):
        rec_with_data.record("weight", "", np.ones(2), step=0)
    with pytest.raises(ValueError, match="kind must be a non-empty string"):
        rec_with_data.record("", "w", np.ones(2), step=0)
    with pytest.raises(ValueError, match="scalar name must be a non-empty string"):
        rec_with_data.record_scalar("", 1.0, step=0)


def test_closed_recorder(store):
    rec = ts.Recorder(store)
    rec.close()
    rec.close()
    with pytest.raises(ValueError, match="closed"):
        rec.record("weight", "w", np.ones(2), step=0)


def test_mode_w_minus_on_existing_store_touches_nothing(rec_with_data, store):
    rec_with_data.close()
    before = tree_snapshot(store)
    with pytest.raises(FileExistsError, match="mode='a'"):
        ts.Recorder(store, mode="w-", attrs={"x": 1})
    assert tree_snapshot(store) == before
    _assert_still_readable(store)


def test_mode_w_overwrites_a_store_but_never_a_plain_folder(tmp_path, store):
    with ts.Recorder(store) as rec:
        rec.record("weight", "w", np.ones(2), step=0)
    with ts.Recorder(store, mode="w") as rec:
        rec.record("grad", "g", np.ones(2), step=0)
    assert ts.open_run(store).kinds == ["grad"]

    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="not a Zarr store; refusing to delete"):
        ts.Recorder(precious, mode="w")
    with pytest.raises(FileExistsError, match="not a Zarr store"):
        ts.Recorder(precious, mode="a")
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_mode_a_refuses_other_stores_and_conflicting_attrs(tmp_path, store):
    import zarr

    other = tmp_path / "other.zarr"
    zarr.open_group(other, mode="w")
    with pytest.raises(ValueError, match="not a tensorstats run store"):
        ts.Recorder(other, mode="a")
    with pytest.raises(ValueError, match="not a tensorstats run store"):
        ts.open_run(other)
    with ts.Recorder(store, attrs={"init": "xavier"}):
        pass
    before = tree_snapshot(store)
    with pytest.raises(ValueError, match="init.*stored 'xavier', given 'ones'"):
        ts.Recorder(store, mode="a", attrs={"init": "ones"})
    assert tree_snapshot(store) == before


def test_bad_arguments(store):
    with pytest.raises(ValueError, match="mode must be one of"):
        ts.Recorder(store, mode="r")
    with pytest.raises(ValueError, match="codec must be one of"):
        ts.Recorder(store, codec="gzip")
    with pytest.raises(TypeError, match="JSON-serialisable"):
        ts.Recorder(store, attrs={"f": object()})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        ts.Recorder(store, attrs={"x": float("nan")})
    with pytest.raises(ValueError, match="reserved"):
        ts.Recorder(store, attrs={"tensorstats": 1})
    with pytest.raises(ValueError, match="storage_options only apply"):
        ts.Recorder(store, storage_options={"anon": True})
    assert not os.path.exists(store)


def test_open_run_errors(tmp_path, store):
    with pytest.raises(FileNotFoundError, match="no run store"):
        ts.open_run(tmp_path / "missing.zarr")
    with ts.Recorder(store) as rec:
        rec.record("weight", "w", np.ones(2), step=0)
    run = ts.open_run(store)
    with pytest.raises(KeyError, match="no kind 'grad'.*kinds: \\['weight'\\]"):
        run["grad", "w"]
    with pytest.raises(KeyError, match="no layer 'v' of kind 'weight'.*layers: \\['w'\\]"):
        run["weight", "v"]
    with pytest.raises(KeyError, match="index a Run with \\(kind, layer\\)"):
        run["weight"]


def test_newer_format_major_refused(store):
    import json

    with ts.Recorder(store):
        pass
    with open(os.path.join(store, "zarr.json")) as f:
        root = json.load(f)
    root["attributes"]["tensorstats"]["format_version"] = "2.0"
    root.pop("consolidated_metadata")
    with open(os.path.join(store, "zarr.json"), "w") as f:
        json.dump(root, f)
    with pytest.raises(ValueError, match="store format 2.0"):
        ts.open_run(store)
    with pytest.raises(ValueError, match="store format 2.0"):
        ts.Recorder(store, mode="a")


def test_integer_overflow_is_refused_not_wrapped(rec_with_data, store):
    rec_with_data.record("input", "ids", np.array([1, -3], np.int8), step=0)
    rec_with_data.record("input", "ids", np.array([100, -100], np.int64), step=1)  # fits
    with pytest.raises(ValueError, match=r"'ids' at step 2: values from -200 to 300 do not fit"):
        rec_with_data.record("input", "ids", np.array([300, -200], np.int64), step=2)
    rec_with_data.close()
    np.testing.assert_array_equal(ts.open_run(store)["input", "ids"].values,
                                  [[1, -3], [100, -100]])


def test_integer_like_steps_and_0d_values(store):
    with ts.Recorder(store) as rec:
        rec.record("weight", "scale", np.float32(0.5), step=np.int64(3))  # 0-d: no channel
        rec.record("weight", "scale", 1.5, step=np.array(4))
        with pytest.raises(TypeError, match="step must be an integer"):
            rec.record("weight", "scale", 1.0, step=np.array(5.0))
        with pytest.raises(TypeError, match="step must be an integer"):
            rec.record("weight", "scale", 1.0, step=np.bool_(True))
    da = ts.open_run(store)["weight", "scale"]
    assert da.dims == ("step",)
    np.testing.assert_array_equal(da["step"].values, [3, 4])
    np.testing.assert_array_equal(da.values, [0.5, 1.5])


def test_series_attrs_must_be_json(rec_with_data, store):
    with pytest.raises(TypeError, match="'meta' at step 0: attrs must be JSON-serialisable"):
        rec_with_data.record("weight", "meta", np.ones(2), step=0, attrs={"f": object()})
    with pytest.raises(ValueError, match="reserved"):
        rec_with_data.record("weight", "meta", np.ones(2), step=0, attrs={"tensorstats": 1})
    rec_with_data.close()
    assert "meta" not in ts.open_run(store).layers("weight")
