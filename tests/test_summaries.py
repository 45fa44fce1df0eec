"""Per-step summaries (``watch(..., summaries="moments")``, ``Recorder.record_summary``)
and the first NaN/Inf step kept in the run's metadata.

Summaries are computed on the tensor's device; here they are compared with
NumPy/SciPy on the same tensors (features from a forward hook, feature
gradients from ``retain_grad``, weights and gradients from the parameters).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats

import tensorstats as ts

torch = pytest.importorskip("torch")
from tensorstats.torch import watch  # noqa: E402
from tensorstats.torch._summaries import device_moments, torch_moments  # noqa: E402

STEPS = 6


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 3))


def per_channel(x: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(x.astype(np.float64), axis, 0).reshape(x.shape[axis], -1)


@pytest.fixture(scope="module")
def summarized(tmp_path_factory):
    path = tmp_path_factory.mktemp("sum") / "run.zarr"
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ref: dict = {}
    keep = {}

    def hook(module, inputs, out):
        out.retain_grad()
        keep["conv"] = out

    net[0].register_forward_hook(hook)
    with ts.Recorder(path) as rec, watch(net, rec, every=4, summaries="moments") as w:
        for step in range(STEPS):
            g = torch.Generator().manual_seed(step)
            x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
            if step == 5:
                x[0, 0, 0, :2] = float("nan")
            ref[f"weight/{step}"] = net[0].weight.detach().numpy().copy()
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            ref[f"feature/{step}"] = keep["conv"].detach().numpy().copy()
            ref[f"feature_grad/{step}"] = keep["conv"].grad.numpy().copy()
            ref[f"grad/{step}"] = net[0].weight.grad.numpy().copy()
            opt.step()
            w.step(step, loss=loss.item())
    return ts.open_run(path), ref, path


@pytest.mark.parametrize(("kind", "layer", "axis"), [
    ("feature", "0", 1), ("feature_grad", "0", 1), ("weight", "0.weight", 0),
    ("grad", "0.weight", 0)])
def test_summaries_match_numpy_and_scipy(summarized, kind, layer, axis):
    run, ref, _ = summarized
    res = ts.moments(run.summary(kind, layer)).compute()
    assert res["step"].values.tolist() == list(range(STEPS))  # every step
    for step in range(STEPS - 1):  # step 5 has NaNs: checked below
        x = per_channel(ref[f"{kind}/{step}"], axis)
        got = res.sel(step=step)
        np.testing.assert_allclose(got["mean"].values, x.mean(1), rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(got["var"].values, x.var(1), rtol=1e-10, atol=1e-20)
        np.testing.assert_allclose(got["skew"].values, stats.skew(x, axis=1), rtol=1e-8,
                                   atol=1e-10)
        np.testing.assert_allclose(got["kurtosis"].values, stats.kurtosis(x, axis=1),
                                   rtol=1e-8, atol=1e-10)
        np.testing.assert_array_equal(got["min"].values, x.min(1))
        np.testing.assert_array_equal(got["max"].values, x.max(1))
        assert (got["count"].values == x.shape[1]).all()


def test_raw_and_summaries_on_their_own_schedules(summarized):
    run, _, _ = summarized
    assert run["feature", "0"]["step"].values.tolist() == [0, 4]  # every=4
    raw = ts.moments(run["feature", "0"]).compute()
    summ = ts.moments(run.summary("feature", "0")).sel(step=[0, 4]).compute()
    for var in ("mean", "var", "skew", "kurtosis", "min", "max", "count"):
        np.testing.assert_allclose(summ[var].values, raw[var].values, rtol=1e-9, atol=1e-12)


def test_nan_counts_and_first_nonfinite_step(summarized):
    run, ref, _ = summarized
    x = per_channel(ref["feature/5"], 1)
    got = ts.moments(run.summary("feature", "0")).sel(step=5).compute()
    np.testing.assert_array_equal(got["nan_count"].values, np.isnan(x).sum(1))
    finite = [row[np.isfinite(row)] for row in x]
    np.testing.assert_allclose(got["mean"].values, [r.mean() for r in finite], rtol=1e-10)
    first = run.attrs["tensorstats"]["first_nonfinite"]
    assert first["step"] == 5 and first["nan"] > 0


@pytest.mark.parametrize("impl", [device_moments, torch_moments])  # compiled (CPU) / torch ops
def test_device_moments_rows_without_finite_values(impl):
    m = impl(torch.tensor([[float("nan"), float("inf")], [1.0, 3.0]]), 0).numpy()
    assert m[0, :3].tolist() == [0.0, 1.0, 1.0] and np.isnan(m[0, 3:]).all()
    assert m[1].tolist() == [2.0, 0.0, 0.0, 2.0, 2.0, 0.0, 2.0, 1.0, 3.0]


def test_record_summary_checks_its_input(tmp_path):
    with ts.Recorder(tmp_path / "r.zarr") as rec:
        with pytest.raises(ValueError, match="shape"):
            rec.record_summary("feature", "f", np.zeros((3, 4)), step=0)
        rec.record_summary("feature", "f", np.zeros((3, 9)), step=0)
        with pytest.raises(ValueError, match="not greater"):
            rec.record_summary("feature", "f", np.zeros((3, 9)), step=0)
        with pytest.raises(ValueError, match="differs"):
            rec.record_summary("feature", "f", np.zeros((2, 9)), step=1)
    assert ts.open_run(tmp_path / "r.zarr").summary("feature", "f").shape == (1, 3, 9)


def test_first_nonfinite_survives_a_crash(tmp_path):
    """The writer is killed after a NaN step: the run still says where it went bad."""
    path = tmp_path / "crash.zarr"
    code = textwrap.dedent(f"""
        import os, numpy as np, tensorstats as ts
        rec = ts.Recorder({str(path)!r})
        for step in range(6):
            x = np.ones((4, 16), np.float32)
            if step >= 3:
                x[1, 2] = np.inf
            rec.record("feature", "fc", x, step=step)
        os.kill(os.getpid(), 9)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ})
    assert proc.returncode == -9
    first = ts.open_run(path).attrs["tensorstats"]["first_nonfinite"]
    assert first == {"step": 3, "series": "feature/fc", "nan": 0, "inf": 1}


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("impl", [device_moments, torch_moments])  # compiled (CPU) / torch ops
def test_device_moments_against_numpy_including_offset_data(axis, impl):
    rng = np.random.default_rng(7)
    x = 1e7 + 0.1 * rng.standard_t(5, size=(5, 6, 40))  # float64: an offset of 1e7
    got = impl(torch.from_numpy(x), axis).numpy()
    flat = per_channel(x, axis)
    mean = flat.mean(1)
    d = flat - mean[:, None]
    np.testing.assert_allclose(got[:, 3], mean, rtol=1e-15)
    for k, col in ((2, 4), (3, 5), (4, 6)):  # odd sums cancel: tolerance on the scale
        scale = (np.abs(d) ** k).sum(1)
        np.testing.assert_allclose(got[:, col], (d ** k).sum(1), rtol=0, atol=1e-7 * scale.max())
    np.testing.assert_allclose(got[:, 4] / flat.shape[1], flat.var(1), rtol=1e-9)
    np.testing.assert_array_equal(got[:, 7], flat.min(1))
    # the masked path (taken when a NaN is present) agrees with the fast one
    masked = x.copy()
    masked[(0,) * 3] = np.nan
    slow = impl(torch.from_numpy(masked), axis).numpy()
    np.testing.assert_allclose(slow[1:, 3:], got[1:, 3:], rtol=1e-9, atol=1e-7)


def test_first_nonfinite_kept_when_resuming(tmp_path):
    path = tmp_path / "r.zarr"
    x = np.ones((2, 4), np.float32)
    with ts.Recorder(path) as rec:
        rec.record("feature", "f", x, step=0)
        bad = x.copy()
        bad[0, 0] = np.nan
        rec.record("feature", "f", bad, step=1)
    with ts.Recorder(path, mode="a") as rec:  # a later NaN does not move the first one
        rec.record("feature", "f", bad, step=2)
        rec.record_summary("feature", "h", [[2, 1, 0, 1, 0, 0, 0, 1, 1]], step=3)
    first = ts.open_run(path).attrs["tensorstats"]["first_nonfinite"]
    assert first == {"step": 1, "series": "feature/f", "nan": 1, "inf": 0}


def test_info_says_where_values_went_bad(tmp_path):
    import json

    path = tmp_path / "r.zarr"
    with ts.Recorder(path) as rec:
        rec.record("feature", "f", np.ones((2, 4)), step=0)
        rec.record("feature", "f", np.full((2, 4), np.inf), step=1)
        rec.record_summary("feature", "f", np.ones((2, 9)), step=1)
    exe = os.path.join(os.path.dirname(sys.executable), "tensorstats")
    human = subprocess.run([exe, "info", str(path)], capture_output=True, text=True)
    assert "first NaN/Inf at step 1, in feature/f (0 NaN, 8 Inf)" in human.stdout, human.stderr
    info = json.loads(subprocess.run([exe, "info", str(path), "--json"], capture_output=True,
                                     text=True).stdout)
    assert info["first_nonfinite"]["step"] == 1 and info["summaries"] == {"feature": ["f"]}
