"""The demo's model really trains: its gradients equal autograd's; it runs end to end."""

from __future__ import annotations

import numpy as np
import pytest

import tensorstats as ts
from tensorstats import demo, demo_numpy

pytestmark = pytest.mark.slow


def test_demo_gradients_match_autograd():
    torch = pytest.importorskip("torch")
    x, y, _ = demo_numpy.load_data()
    x, y = x[:32], y[:32]
    model = demo_numpy.MLP([64, 16, 12, 10], seed=3)
    out = model.forward_backward(x, y)

    params = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    h = torch.tensor(x)
    feats = {}
    for i, name in enumerate(model.names):
        z = h @ params[f"{name}.weight"].T + params[f"{name}.bias"]
        z.retain_grad()
        feats[name] = z
        h = torch.relu(z) if i < len(model.names) - 1 else z
    loss = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    loss.backward()

    assert out["loss"] == pytest.approx(loss.item(), rel=1e-12)
    for k, p in params.items():
        np.testing.assert_allclose(out["grads"][k], p.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, z in feats.items():
        np.testing.assert_allclose(out["features"][name], z.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(out["feature_grads"][name], z.grad.numpy(), rtol=1e-10,
                                   atol=1e-14)


def test_numpy_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "run.zarr"
    demo_numpy.main(["--out", str(out), "--steps", "30", "--every", "10"])
    text = capsys.readouterr().out
    assert "fc1.weight" in text and "loss:" in text
    run = ts.open_run(out)
    assert run.kinds == ["feature", "feature_grad", "grad", "weight"]
    np.testing.assert_array_equal(run["weight", "fc1.weight"]["step"].values, [0, 10, 20, 29])
    assert run.scalars["loss"].dropna("step").sizes["step"] == 30
    # the weights recorded at step 0 are the initial ones (the pass's weights)
    init = demo_numpy.MLP([64, 128, 64, 10], seed=0).params["fc1.weight"]
    np.testing.assert_array_equal(run["weight", "fc1.weight"].isel(step=0).values, init)
    demo_numpy.main(["--out", str(out), "--steps", "12"])  # rerun overwrites its own output
    assert ts.open_run(out)["weight", "fc1.weight"].sizes["step"] == 3


def test_torch_demo_end_to_end(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    demo.main(["--out", str(tmp_path), "--steps", "21", "--every", "10"])
    text = capsys.readouterr().out
    index = tmp_path / "report" / "index.html"
    assert f"file://{index.resolve()}" in text and "findings:" in text
    html = index.read_text()
    assert "kaiming" in html and "xavier" in html  # the two runs side by side
    assert html.count("data:image/png;base64,") >= 5
    runs = ts.open_runs({i: tmp_path / f"{i}.zarr" for i in demo.INITS})
    assert runs["weight", "conv1.weight"]["step"].values.tolist() == [0, 10, 20]
    assert runs.runs["kaiming"].probes == ["random", "train", "valid"]
    assert runs.runs["xavier"].attrs["init"] == "xavier"
    assert {"emission", "absorption"} <= set(runs.kinds)
    # the recorded initial weights are the initialisation: Kaiming std = sqrt(2 / fan_in)
    w0 = runs["weight", "conv2.weight"].sel(run="kaiming", step=0).values
    assert abs(w0.std() / np.sqrt(2 / (16 * 9)) - 1) < 0.1
    # the capture-time emission equals the offline computation from the stored tensors
    run = runs.runs["kaiming"]
    offline = ts.emission_absorption(run, "conv2", source="offline").compute()
    captured = ts.emission_absorption(run, "conv2", source="captured").compute()
    for name in ("emission", "absorption"):
        np.testing.assert_allclose(captured[name].values,
                                   offline[name].transpose(*captured[name].dims).values,
                                   rtol=1e-4, atol=1e-7)
