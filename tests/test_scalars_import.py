"""ts.scalars_from_tensorboard and scalars_from_csv: every logged value comes back unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import tensorstats as ts


@pytest.fixture
def tb_dir(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    logged = {}
    for sub, tags in (("train", ("loss", "lr")), ("valid", ("loss",))):
        with SummaryWriter(str(tmp_path / sub)) as w:
            for tag in tags:
                steps = list(range(0, 50, 5 if sub == "train" else 10))
                values = [1.0 / (s + 1) + (0.5 if tag == "lr" else 0.0) for s in steps]
                if sub == "train" and tag == "loss":
                    values[3] = float("nan")  # a diverged step is kept as NaN
                for s, v in zip(steps, values, strict=True):
                    w.add_scalar(tag, v, s)
                logged[f"{sub}/{tag}"] = (steps, values)
    return tmp_path, logged


def test_tensorboard_every_tag_every_value(tb_dir):
    path, logged = tb_dir
    ds = ts.scalars_from_tensorboard(path)
    assert sorted(ds.data_vars) == sorted(logged)
    assert ds["step"].dtype == np.int64
    for tag, (steps, values) in logged.items():
        got = ds[tag].dropna("step")
        sel = ds[tag].sel(step=steps).values
        # float32 in the event file: compare at float32 precision, NaN where logged NaN
        np.testing.assert_allclose(sel, np.float32(values), rtol=1e-7)
        assert got.sizes["step"] == sum(np.isfinite(values))
    missing = sorted(set(ds["step"].values) - set(logged["valid/loss"][0]))
    assert np.isnan(ds["valid/loss"].sel(step=missing)).all()
    # one folder alone gives the bare tag names
    alone = ts.scalars_from_tensorboard(path / "valid")
    assert list(alone.data_vars) == ["loss"]


def test_tensorboard_repeated_step_keeps_latest_and_warns(tmp_path):
    pytest.importorskip("tensorboard")
    import time

    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path)) as w:
        for s in range(3):
            w.add_scalar("loss", 10.0 + s, s)
    time.sleep(0.05)
    with SummaryWriter(str(tmp_path)) as w:  # a restarted run, same folder
        w.add_scalar("loss", 99.0, 1)
    with pytest.warns(UserWarning, match="1 step"):
        ds = ts.scalars_from_tensorboard(tmp_path)
    assert ds["loss"].values.tolist() == [10.0, 99.0, 12.0]


def test_tensorboard_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        ts.scalars_from_tensorboard(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        ts.scalars_from_tensorboard(tmp_path)


def test_csv_wandb_export(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("_step,_runtime,_timestamp,loss,lr,note\n"
                    "0,1.5,1700000000,2.5,0.1,start\n"
                    "20,2.5,1700000001,,0.1,\n"
                    "10,2.0,1700000000.5,1.25,0.05,x\n")
    with pytest.warns(UserWarning, match=r"\['note'\]"):
        ds = ts.scalars_from_csv(path)
    assert sorted(ds.data_vars) == ["loss", "lr"]
    assert ds["step"].values.tolist() == [0, 10, 20]
    np.testing.assert_array_equal(ds["loss"].values, [2.5, 1.25, np.nan])
    np.testing.assert_array_equal(ds["lr"].values, [0.1, 0.05, 0.1])


def test_csv_tensorboard_export_named_after_file(tmp_path):
    path = tmp_path / "valid_loss.csv"
    path.write_text("Wall time,Step,Value\n1.0,0,0.9\n2.0,100,0.4\n")
    ds = ts.scalars_from_csv(path)
    assert list(ds.data_vars) == ["valid_loss"]
    assert ds["valid_loss"].sel(step=100).item() == 0.4


def test_csv_correlates_with_a_recorded_series(tmp_path):
    rng = np.random.default_rng(0)
    steps = np.arange(0, 200, 10)
    loss = np.exp(-steps / 80) + rng.normal(0, 0.01, steps.size)
    (tmp_path / "loss.csv").write_text(
        "step,loss\n" + "".join(f"{s},{float(v)!r}\n" for s, v in zip(steps, loss, strict=True)))
    with ts.Recorder(tmp_path / "r.zarr") as rec:
        for i, s in enumerate(steps):
            rec.record("weight", "w", rng.normal(0, 1 + i, size=(4, 30)), step=int(s),
                       channel_axis=0)
    std = ts.moments(ts.open_run(tmp_path / "r.zarr")["weight", "w"], by="step")["std"]
    res = ts.correlate(std, ts.scalars_from_csv(tmp_path / "loss.csv")["loss"])
    from scipy.stats import spearmanr

    want = spearmanr(std.values, loss).statistic
    assert float(res["r"].sel(lag=0)) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("text, match", [
    ("loss\n1\n2\n", "no step column"),
    ("step,loss\n0,1\n0.5,2\n", "not an integer"),
    ("step,loss\n0,1\n0,2\n", "step 0 appears 2 times"),
])
def test_csv_errors(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        ts.scalars_from_csv(path)


def test_csv_explicit_step_column_and_missing_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("epoch,acc\n1,0.5\n2,0.7\n")
    assert ts.scalars_from_csv(path, step="epoch")["acc"].values.tolist() == [0.5, 0.7]
    with pytest.raises(FileNotFoundError):
        ts.scalars_from_csv(tmp_path / "none.csv")
