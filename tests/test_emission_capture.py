"""Capture-time emission/absorption (watch, probe_pass) against offline analysis and autograd."""

from __future__ import annotations

import numpy as np
import pytest

import tensorstats as ts
from tensorstats.kernels.emission import local_gradient_sqnorms_reference
from tensorstats.stats.geometry import layer_geometry

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from tensorstats.kernels.emission import emission_absorption as numpy_statistics  # noqa: E402
from tensorstats.torch import module_metadata, watch  # noqa: E402
from tensorstats.torch._local_gradients import (  # noqa: E402
    channel_first,
    device_sqnorms,
    device_statistics,
)

LG_KINDS = ("weight", "feature_grad", "emission", "absorption")


class Net(nn.Module):
    """Strided, grouped and dilated convs, and a Linear over (batch, tokens, features)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # 8x8 -> 4x4 (input 7 would too)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=2, dilation=2, groups=2)
        self.tok = nn.Linear(6, 5)
        self.head = nn.Linear(5 * 16, 4)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        h = self.tok(h.flatten(2).transpose(1, 2))  # (batch, 16 tokens, 6) -> 5 features
        return self.head(torch.relu(h).flatten(1))


def _train(path, steps=4, every=2, kinds=LG_KINDS, probe=None, dtype=torch.float32):
    torch.manual_seed(0)
    model = Net().to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = ts.Recorder(path)
    with watch(model, rec, every=every, kinds=kinds) as w:
        for step in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(torch.randn(5, 3, 8, 8, dtype=dtype)),
                            torch.randint(0, 4, (5,))).backward()
            opt.step()
            w.step(step)
            if probe:
                probe(model, w, step)
    rec.close()
    return ts.open_run(path), model


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_capture_equals_offline_on_the_same_pass(tmp_path, dtype):
    run, _ = _train(tmp_path / "run.zarr", dtype=dtype)
    for layer in ("conv1", "conv2", "tok", "head"):
        offline = ts.emission_absorption(run, layer, source="offline").compute()
        captured = ts.emission_absorption(run, layer, source="captured").compute()
        assert offline["step"].values.tolist() == captured["step"].values.tolist() == [0, 2]
        for var in ("emission", "absorption"):
            assert offline[var].dims == captured[var].dims
            np.testing.assert_allclose(captured[var].values, offline[var].values,
                                       rtol=1e-12, atol=0)
    assert ts.emission_absorption(run, "conv1").attrs["source"] == "offline"


def test_capture_matches_autograd_brute_force(tmp_path):
    """The stored capture against masked backward passes of this test's own replay."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3)).double()
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    rec = ts.Recorder(tmp_path / "run.zarr")
    with watch(model, rec, kinds=("emission", "absorption")) as w:
        model(x).square().sum().backward()
        w.step(0)
    rec.close()
    a = x.clone().requires_grad_(True)
    v = model[0](a)
    g = torch.autograd.grad(model[1:](v).square().sum(), v, retain_graph=True)[0]
    norms = []
    for c in range(4):
        mask = torch.zeros_like(g)
        mask[:, c] = g[:, c]
        (lg,) = torch.autograd.grad(v, a, mask, retain_graph=True)
        norms.append(lg.flatten(2).norm(dim=2))
    norms = torch.stack(norms, 1).numpy()  # (sample, c1, c2)
    run = ts.open_run(tmp_path / "run.zarr")
    ds = ts.emission_absorption(run, "0").compute()
    assert ds.attrs["source"] == "captured"
    np.testing.assert_allclose(ds["emission"].values[0], norms.sum(2), rtol=1e-10)
    np.testing.assert_allclose(ds["absorption"].values[0], norms.sum(1), rtol=1e-10)


def test_input_shape_is_stored_with_per_layer_series(tmp_path):
    run, _ = _train(tmp_path / "run.zarr", kinds=("feature", "feature_grad", "emission"))
    assert run["feature_grad", "conv1"].attrs["input_shape"] == [3, 8, 8]
    assert run["emission", "conv2"].attrs["input_shape"] == [8, 4, 4]
    assert run["feature", "tok"].attrs["input_shape"] == [16, 6]
    assert run["emission", "conv1"].dims == ("step", "channel", "sample")
    assert run.layers("emission") == ["conv1", "conv2", "head", "tok"]
    assert "absorption" not in run.kinds


def _evaluate(model, w, step, batches=3):
    with w.probe_pass("valid"):
        for _ in range(batches):
            F.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.randint(0, 4, (4,))).backward()


def test_probe_pass_concatenates_and_equals_offline(tmp_path):
    run, _ = _train(tmp_path / "run.zarr", probe=_evaluate)
    valid = run.probe("valid")
    assert sorted(valid.kinds) == ["absorption", "emission", "feature_grad", "weight"]
    assert valid["emission", "conv1"]["step"].values.tolist() == [0, 1, 2, 3]
    assert valid["emission", "conv1"].sizes["sample"] == 12  # 3 passes of 4
    for layer in ("conv1", "conv2", "tok", "head"):
        offline = ts.emission_absorption(valid, layer, source="offline").compute()
        captured = ts.emission_absorption(valid, layer, source="captured").compute()
        np.testing.assert_allclose(captured["emission"].values, offline["emission"].values,
                                   rtol=1e-12)
        np.testing.assert_allclose(captured["absorption"].values,
                                   offline["absorption"].values, rtol=1e-12)
    # the probe's weights are those its passes used (after opt.step), not the training pass's
    assert not np.array_equal(valid["weight", "conv1.weight"].sel(step=0).values,
                              run["weight", "conv1.weight"].sel(step=0).values)


def test_probe_pass_records_the_weights_the_block_used(tmp_path):
    seen = {}

    def probe(model, w, step):
        seen[step] = model.conv1.weight.detach().clone()
        _evaluate(model, w, step, batches=1)

    run, _ = _train(tmp_path / "run.zarr", probe=probe)
    for step, weight in seen.items():
        np.testing.assert_array_equal(
            run.probe("valid")["weight", "conv1.weight"].sel(step=step).values, weight.numpy())


def test_probe_pass_leaves_training_untouched(tmp_path):
    torch.manual_seed(0)
    model = Net()
    model.conv2.eval()  # a module deliberately left in eval mode
    rec = ts.Recorder(tmp_path / "run.zarr")
    w = watch(model, rec, every=5, kinds=LG_KINDS)
    F.cross_entropy(model(torch.randn(5, 3, 8, 8)), torch.randint(0, 4, (5,))).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    modes = [m.training for m in model.modules()]
    with w.probe_pass("valid", step=0, kinds=("emission", "absorption")):
        assert not model.training
        model(torch.randn(2, 3, 8, 8)).sum().backward()
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters())
    assert [m.training for m in model.modules()] == modes
    w.step(0)  # the training pass captured before the probe block is still recorded
    w.remove()
    rec.close()
    run = ts.open_run(tmp_path / "run.zarr")
    assert run.probe("valid").kinds == ["absorption", "emission"]
    offline = ts.emission_absorption(run, "conv1", source="offline").compute()
    captured = ts.emission_absorption(run, "conv1", source="captured").compute()
    np.testing.assert_allclose(captured["emission"].values, offline["emission"].values,
                               rtol=1e-12)
    assert offline.sizes["sample"] == 5


def test_probe_pass_at_a_skipped_step_arms_and_disarms(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3))
    rec = ts.Recorder(tmp_path / "run.zarr")
    w = watch(model, rec, every=10, kinds=("feature", "emission", "absorption"))
    model(torch.randn(2, 4)).sum().backward()
    w.step(0)
    assert not w._handles  # step 1 is not logged: no hooks
    with w.probe_pass("valid"):
        model(torch.randn(3, 4)).sum().backward()
    assert not w._handles
    w.remove()
    rec.close()
    valid = ts.open_run(tmp_path / "run.zarr").probe("valid")
    assert valid["emission", "0"]["step"].values.tolist() == [0]
    assert valid["feature", "0"].sizes["sample"] == 3


def test_probe_pass_errors(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3))
    rec = ts.Recorder(tmp_path / "run.zarr")
    w = watch(model, rec, kinds=("weight", "grad", "emission"))
    with pytest.raises(ValueError, match="step="):
        with w.probe_pass("valid"):
            pass
    with pytest.raises(ValueError, match="kinds"):
        with w.probe_pass("valid", step=0, kinds=("grad",)):
            pass
    with pytest.raises(ValueError, match="kinds"):
        with w.probe_pass("valid", step=0, kinds=("feature",)):
            pass
    with pytest.raises(ValueError, match="non-empty"):
        with w.probe_pass("", step=0):
            pass
    with pytest.raises(RuntimeError, match="inside"):
        with w.probe_pass("a", step=0), w.probe_pass("b", step=0):
            pass
    with pytest.raises(ZeroDivisionError):  # an error inside the block records nothing
        with w.probe_pass("c", step=0):
            model(torch.randn(2, 4)).sum().backward()
            1 / 0  # noqa: B018
    assert w.scope is None
    w.remove()
    rec.close()
    assert ts.open_run(tmp_path / "run.zarr").probes == []


def test_unsupported_module_warns_and_is_skipped(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(18, 2))
    rec = ts.Recorder(tmp_path / "run.zarr")
    with pytest.warns(UserWarning, match="'1'.*BatchNorm2d"):
        with watch(model, rec, layers=[nn.Conv2d, nn.BatchNorm2d, nn.Linear],
                   kinds=("emission", "absorption")) as w:
            model(torch.randn(3, 1, 5, 5)).sum().backward()
            w.step(0)
    rec.close()
    assert ts.open_run(tmp_path / "run.zarr").layers("emission") == ["0", "3"]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("module", [
    nn.Conv1d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2),
    nn.Conv2d(2, 4, 2, padding="same"), nn.Conv3d(2, 3, (3, 1, 2), stride=(1, 2, 1)),
    nn.Conv2d(4, 6, 1, groups=2), nn.Linear(5, 3)], ids=lambda m: type(m).__name__)
def test_device_path_equals_numpy_reference(module):
    """The torch path used on GPUs, run on the CPU here, against the NumPy twin."""
    torch.manual_seed(1)
    geometry = layer_geometry(module_metadata(module), "x")
    x = (torch.randn(3, 7, 5) if geometry.kind == "linear"
         else torch.randn(3, geometry.in_channels, *([7] * geometry.ndim)))
    g = torch.randn_like(module(x))
    size = tuple(x.shape[2:]) if geometry.kind == "conv" else ()
    gc = channel_first(g, geometry)
    ours = device_sqnorms(gc, module.weight, geometry, size)
    ref = local_gradient_sqnorms_reference(gc.numpy(), module.weight.detach().numpy(),
                                           geometry, size)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-12)
    emission, absorption = device_statistics(gc, module.weight, geometry, size)
    expected = numpy_statistics(gc.numpy(), module.weight.detach().numpy(), geometry, size)
    np.testing.assert_allclose(emission.numpy(), expected["emission"], rtol=1e-12)
    np.testing.assert_allclose(absorption.numpy(), expected["absorption"], rtol=1e-12)
    norms = np.sqrt(ref)  # and both against the sums of the reference's norms
    np.testing.assert_allclose(emission.numpy(), norms.sum(-1), rtol=1e-12)
