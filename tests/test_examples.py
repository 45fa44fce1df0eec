"""The example scripts run as documented and print what they promise."""

from __future__ import annotations

import pytest
from _examples import run_example


def test_numpy_loop(tmp_path):
    """What the example recorded, against its first step recomputed here with autograd."""
    import numpy as np
    import torch

    import tensorstats as ts

    out = run_example("numpy_loop.py", str(tmp_path / "run.zarr"))
    run = ts.open_run(tmp_path / "run.zarr")
    assert run.kinds == ["feature", "grad", "weight"]
    w = run["weight", "linear.weight"]
    assert w["step"].values.tolist() == list(range(0, 100, 5))
    # the example's data and first batch, from its seed
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 20))
    y = (x[:, :3] @ rng.standard_normal(3) > 0).astype(int)
    w0 = rng.standard_normal((2, 20)) * 0.1
    idx = rng.choice(len(x), 64, replace=False)
    np.testing.assert_array_equal(w.isel(step=0).values, w0)
    wt = torch.tensor(w0, requires_grad=True)
    z = torch.tensor(x[idx]) @ wt.T
    torch.nn.functional.cross_entropy(z, torch.tensor(y[idx])).backward()
    np.testing.assert_allclose(run["grad", "linear.weight"].isel(step=0).values,
                               wt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(run["feature", "linear"].isel(step=0).values,
                               z.detach().numpy().T, rtol=1e-12)
    loss = run.scalars["loss"].values
    assert loss.size == 100 and loss[-10:].mean() < 0.5 * loss[:10].mean()
    # the printed std trajectory is that of the stored weights
    printed = np.array(out[out.rindex("[") + 1:out.rindex("]")].split(), dtype=float)
    np.testing.assert_allclose(printed, w.values.reshape(20, -1).std(axis=1), rtol=1e-6)


def test_analyse_run():
    out = run_example("analyse_run.py")  # records its own small MLP run first
    for expected in ("share of channels rejected", "median W1 and KS from init",
                     "detrend=difference", "fc1.weight"):
        assert expected in out


def test_jax_loop(tmp_path):
    """The recorded step-0 gradients equal jax.grad of the example's loss, written here."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    import numpy as np
    from sklearn.datasets import load_digits

    import tensorstats as ts

    run_example("jax_loop.py", str(tmp_path / "jax.zarr"))
    run = ts.open_run(tmp_path / "jax.zarr")
    names = ["dense1.bias", "dense1.kernel", "dense2.bias", "dense2.kernel"]
    assert run.layers("weight") == names and run.layers("grad") == names
    assert run.layers("feature") == ["dense1", "dense2"]
    params = {}
    for n in names:  # stored channel first; the kernels are (in, out) with out the channel
        layer, leaf = n.split(".")
        params.setdefault(layer, {})[leaf] = jnp.asarray(
            np.moveaxis(run["weight", n].isel(step=0).values, 0, -1))
    digits = load_digits()
    x = jnp.asarray(digits.data / 16.0, dtype=jnp.float32)
    idx = np.random.default_rng(0).choice(x.shape[0], 128, replace=False)
    xb, yb = x[idx], jnp.asarray(digits.target)[idx]

    def loss_fn(p):
        z1 = xb @ p["dense1"]["kernel"] + p["dense1"]["bias"]
        z2 = jnp.tanh(z1) @ p["dense2"]["kernel"] + p["dense2"]["bias"]
        logp = jax.nn.log_softmax(z2)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1)), z1

    (loss, z1), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    assert float(run.scalars["loss"].sel(step=0)) == pytest.approx(float(loss), rel=1e-5)
    for n in names:
        layer, leaf = n.split(".")
        np.testing.assert_allclose(run["grad", n].isel(step=0).values,
                                   np.moveaxis(np.asarray(grads[layer][leaf]), -1, 0),
                                   rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(run["feature", "dense1"].isel(step=0).values,
                               np.asarray(z1).T, rtol=1e-5, atol=1e-6)


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
