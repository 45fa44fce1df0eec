"""tensorstats.torch.watch against brute-force torch.autograd references."""

from __future__ import annotations

import numpy as np
import pytest

import tensorstats as ts
import tensorstats.torch

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


class SeedCNN(nn.Module):
    """The seed paper's CNN, narrower, on 3x8x8 inputs; ReLUs are in-place on purpose."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, 1, 1)
        self.conv2 = nn.Conv2d(4, 4, 3, 1, 1)
        self.conv3 = nn.Conv2d(4, 4, 3, 1, 1)
        self.fc1 = nn.Linear(4 * 2 * 2, 8)
        self.fc2 = nn.Linear(8, 10)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = F.max_pool2d(self.act(self.conv1(x)), 2)
        x = F.max_pool2d(self.act(self.conv2(x)), 2)
        x = self.act(self.conv3(x)).flatten(1)
        return self.fc2(self.act(self.fc1(x)))


def manual_pass(params, x, y):
    """Functional forward of SeedCNN with its pre-activations kept for autograd."""
    z = {}
    z["conv1"] = F.conv2d(x, params["conv1.weight"], params["conv1.bias"], padding=1)
    h = F.max_pool2d(torch.relu(z["conv1"]), 2)
    z["conv2"] = F.conv2d(h, params["conv2.weight"], params["conv2.bias"], padding=1)
    h = F.max_pool2d(torch.relu(z["conv2"]), 2)
    z["conv3"] = F.conv2d(h, params["conv3.weight"], params["conv3.bias"], padding=1)
    h = torch.relu(z["conv3"]).flatten(1)
    z["fc1"] = h @ params["fc1.weight"].T + params["fc1.bias"]
    z["fc2"] = torch.relu(z["fc1"]) @ params["fc2.weight"].T + params["fc2.bias"]
    loss = F.cross_entropy(z["fc2"], y)
    return loss, z


def _nchw_to_store(t):  # (N, C, H, W) -> (C, N, H, W), as the store keeps channel first
    return np.moveaxis(t.detach().numpy(), 1, 0)


def _linear_to_store(t):  # (N, F) -> (F, N)
    return t.detach().numpy().T


def test_watch_matches_autograd(tmp_path):
    torch.manual_seed(0)
    model = SeedCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rec = ts.Recorder(tmp_path / "run.zarr")
    batches = [(torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,))) for _ in range(5)]
    references = {}
    w = ts.torch.watch(model, rec, every=2)
    for step, (x, y) in enumerate(batches):
        params = {k: v.detach().clone().requires_grad_(True)
                  for k, v in model.named_parameters()}
        loss_ref, z = manual_pass(params, x, y)
        grads = torch.autograd.grad(loss_ref, [*params.values(), *z.values()])
        references[step] = (params, z, dict(zip([*params, *(f"z.{k}" for k in z)], grads,
                                                 strict=True)), loss_ref)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()  # weights change before w.step: the recorded ones must not
        w.step(step, loss=loss.item())
    w.remove()
    rec.close()

    run = ts.open_run(tmp_path / "run.zarr")
    assert run.kinds == ["feature", "feature_grad", "grad", "weight"]
    assert run.layers("feature") == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    assert run.layers("weight") == run.layers("grad") == sorted(
        n for n, _ in model.named_parameters())  # every parameter by default
    np.testing.assert_allclose(run.scalars["loss"].values,
                               [references[s][3].item() for s in range(5)], rtol=1e-6)
    for step in (0, 2, 4):
        params, z, grads, _ = references[step]
        for name, p in params.items():
            np.testing.assert_array_equal(run["weight", name].sel(step=step).values,
                                          p.detach().numpy())
            np.testing.assert_allclose(run["grad", name].sel(step=step).values,
                                       grads[name].numpy(), rtol=1e-5, atol=1e-7)
        for layer in z:
            conv = layer.startswith("conv")
            to_store = _nchw_to_store if conv else _linear_to_store
            np.testing.assert_allclose(run["feature", layer].sel(step=step).values,
                                       to_store(z[layer]), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(run["feature_grad", layer].sel(step=step).values,
                                       to_store(grads[f"z.{layer}"]), rtol=1e-5, atol=1e-8)
    assert run["feature", "conv1"].dims == ("step", "channel", "sample", "height", "width")
    assert run["feature", "fc1"].dims == ("step", "channel", "sample")
    np.testing.assert_array_equal(run["weight", "conv1.weight"]["step"].values, [0, 2, 4])
    meta = run["weight", "conv2.weight"].attrs["module"]
    assert meta == {"type": "Conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": [3, 3],
                    "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1,
                    "padding_mode": "zeros", "transposed": False, "bias": True}
    assert run["feature", "fc1"].attrs["module"]["in_features"] == 16


def _hook_count(model):
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
    for p in model.parameters():
        n += len(getattr(p, "_post_accumulate_grad_hooks", None) or {})
    return n


def _train(model, w, steps, x=None, start=0):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(4, 3, 8, 8) if x is None else x
    armed = []
    for step in range(start, start + steps):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
        w.step(step)
        armed.append(_hook_count(model) > 0)
    return armed


@pytest.mark.parametrize(("every", "expected"), [
    (3, [0, 3, 6, 9]),
    (ts.at([1, 2, 7]), [1, 2, 7]),
    (ts.logspaced(9, num=4), [0, 1, 2, 4, 9]),
    (lambda s: s % 4 == 1, [1, 5, 9]),
])
def test_schedules_and_no_hooks_when_skipped(tmp_path, every, expected):
    torch.manual_seed(0)
    model = SeedCNN()
    rec = ts.Recorder(tmp_path / "run.zarr")
    w = ts.torch.watch(model, rec, every=every)
    armed = _train(model, w, 10)
    w.remove()
    rec.close()
    run = ts.open_run(tmp_path / "run.zarr")
    for kind in ("weight", "grad", "feature", "feature_grad"):
        assert run[kind, run.layers(kind)[0]]["step"].values.tolist() == expected
    # after w.step(s), hooks are installed exactly when s + 1 is a logging step
    assert armed == [s + 1 in expected for s in range(10)]
    assert _hook_count(model) == 0


def test_remove_and_context_manager_leave_model_as_before(tmp_path):
    torch.manual_seed(0)
    model = SeedCNN()
    x = torch.randn(2, 3, 8, 8)
    before = model(x).detach()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with ts.Recorder(tmp_path / "run.zarr") as rec:
        with ts.torch.watch(model, rec, every=1, kinds=ts.torch.KINDS) as w:
            assert _hook_count(model) > 0
            model(x).sum().backward()
            w.step(0)
        assert _hook_count(model) == 0
        with pytest.raises(RuntimeError, match="removed"):
            w.step(1)
    assert torch.equal(model(x).detach(), before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_probes_eval_no_grad_and_restore_modes(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.Linear(6, 3))
    model.train()
    model[2].eval()  # a module deliberately left in eval mode
    probe_x = torch.randn(7, 5)
    rec = ts.Recorder(tmp_path / "run.zarr")
    w = ts.torch.watch(model, rec, every=2, probes={"valid": probe_x, "random": torch.randn(3, 5)})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = {}
    for step in range(3):
        opt.zero_grad()
        model(torch.randn(8, 5)).sum().backward()
        opt.step()
        if step % 2 == 0:  # the probe sees the weights after opt.step, in eval mode
            modes = [m.training for m in model.modules()]
            stats = model[1].running_mean.clone()
            model.eval()
            with torch.no_grad():
                expected[step] = (model[0](probe_x), model(probe_x))
            for m, t in zip(model.modules(), modes, strict=True):
                m.training = t
        w.step(step)
        if step % 2 == 0:
            assert torch.equal(model[1].running_mean, stats)  # probe did not touch BN stats
        assert [m.training for m in model.modules()] == [True, True, True, False, True]
    w.remove()
    rec.close()
    run = ts.open_run(tmp_path / "run.zarr")
    assert run.probes == ["random", "valid"]
    valid = run.probe("valid")
    assert valid.kinds == ["feature"]  # no gradients on probes
    for step in (0, 2):
        np.testing.assert_allclose(valid["feature", "0"].sel(step=step).values,
                                   expected[step][0].numpy().T, rtol=1e-6)
        np.testing.assert_allclose(valid["feature", "3"].sel(step=step).values,
                                   expected[step][1].numpy().T, rtol=1e-6)
    assert run.probe("random")["feature", "3"].sizes["sample"] == 3


def test_reused_module_and_eval_mode_module(tmp_path):
    torch.manual_seed(0)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(4, 4)
            self.shared = nn.Linear(4, 4)

        def forward(self, x):
            return self.shared(torch.tanh(self.shared(self.inp(x))))

    model = Twice()
    model.inp.eval()  # eval mode does not stop hooks
    x = torch.randn(5, 4)
    rec = ts.Recorder(tmp_path / "run.zarr")
    w = ts.torch.watch(model, rec, every=1)
    z1 = model.shared(model.inp(x))
    z1.retain_grad()
    z2 = model.shared(torch.tanh(z1))
    z2.retain_grad()
    z2.pow(2).sum().backward()
    ref = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    model(x).pow(2).sum().backward()
    w.step(0)
    w.remove()
    rec.close()
    run = ts.open_run(tmp_path / "run.zarr")
    assert run.layers("feature") == ["inp", "shared", "shared[1]"]
    np.testing.assert_allclose(run["feature", "shared"].values[0], z1.detach().numpy().T,
                               rtol=1e-6)
    np.testing.assert_allclose(run["feature", "shared[1]"].values[0], z2.detach().numpy().T,
                               rtol=1e-6)
    np.testing.assert_allclose(run["feature_grad", "shared"].values[0], z1.grad.numpy().T,
                               rtol=1e-5)
    np.testing.assert_allclose(run["feature_grad", "shared[1]"].values[0], z2.grad.numpy().T,
                               rtol=1e-5)
    # the shared weight's gradient sums both calls, exactly as autograd's
    np.testing.assert_allclose(run["grad", "shared.weight"].values[0],
                               ref["shared.weight"].numpy(), rtol=1e-5)


def test_gradient_accumulation_features_of_first_pass_grad_accumulated(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    xs = [torch.randn(4, 3), torch.randn(4, 3)]
    rec = ts.Recorder(tmp_path / "run.zarr")
    w = ts.torch.watch(model, rec, every=1)
    for x in xs:
        model(x).sum().backward()
    used = model.weight.grad.clone()  # what an optimizer.step() here would use
    w.step(0)
    w.remove()
    rec.close()
    run = ts.open_run(tmp_path / "run.zarr")
    np.testing.assert_allclose(run["feature", "(root)"].values[0], (xs[0] @ model.weight.T
                                                              + model.bias).detach().numpy().T,
                               rtol=1e-6)
    # grad: the accumulated .grad after the last backward, i.e. d(sum of both losses)/dW,
    # which for sum(x @ W.T + b) is the column sums of both batches, in each row
    expected = np.tile((xs[0].sum(0) + xs[1].sum(0)).numpy(), (2, 1))
    np.testing.assert_allclose(run["grad", "weight"].values[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(run["grad", "weight"].values[0], used.numpy())


def test_layer_selection_inputs_sampling_and_bf16(tmp_path):
    torch.manual_seed(0)
    model = SeedCNN().to(torch.bfloat16)
    x = torch.randn(4, 3, 8, 8, dtype=torch.bfloat16)
    rec = ts.Recorder(tmp_path / "run.zarr")
    w = ts.torch.watch(model, rec, every=1, kinds=("feature", "input", "weight"),
                       layers=["conv*", nn.Linear], max_elements=20)
    with torch.no_grad():
        model(x)
    w.step(0)
    w.remove()
    rec.close()
    run = ts.open_run(tmp_path / "run.zarr")
    assert run.layers("feature") == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    conv1 = run["feature", "conv1"]  # 4*8*8 = 256 elements per channel > 20: sampled
    assert conv1.dims == ("step", "channel", "element") and conv1.sizes["element"] == 20
    assert conv1.attrs["source_dtype"] == "bfloat16"
    ref = model.conv1(x).detach().float().numpy()
    flat = np.moveaxis(ref, 1, 0).reshape(4, -1)
    np.testing.assert_array_equal(conv1.values[0], flat[:, conv1["position"].values])
    moments = run.moments("feature", "conv1").sel(step=0)
    np.testing.assert_allclose(moments.sel(moment="mean").values, flat.mean(1), rtol=1e-5)
    np.testing.assert_allclose(moments.sel(moment="m2").values / 256, flat.var(1), rtol=1e-5)
    np.testing.assert_array_equal(run["input", "conv1"].values[0].reshape(3, -1),
                                  np.moveaxis(x.float().numpy(), 1, 0).reshape(3, -1)[
                                      :, run["input", "conv1"]["position"].values])
    with pytest.raises(ValueError, match="'nope' matches no module"):
        ts.torch.watch(model, rec, layers=["nope"])


def test_bad_arguments(tmp_path):
    rec = ts.Recorder(tmp_path / "run.zarr")
    with pytest.raises(ValueError, match="kinds"):
        ts.torch.watch(SeedCNN(), rec, kinds=("weights",))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ts.torch.watch(object(), rec)
    with pytest.raises(ValueError, match="no module to watch"):
        ts.torch.watch(nn.Sequential(nn.ReLU()), rec)
    with pytest.raises(ValueError, match="sequence_dim"):
        ts.torch.watch(nn.Linear(2, 2), rec, sequence_dim=2)
    w = ts.torch.watch(nn.Linear(2, 2), rec)
    with pytest.warns(UserWarning, match="no forward/backward pass ran"):
        w.step(3)
    with pytest.raises(ValueError, match="steps must increase"):
        w.step(3)
    rec.close()
