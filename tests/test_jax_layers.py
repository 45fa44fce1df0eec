"""Layer analyses of runs recorded from JAX: module metadata through record_pytree(modules=...)."""

from __future__ import annotations

import numpy as np
import pytest

import tensorstats as ts

jax = pytest.importorskip("jax")
jnp = jax.numpy

from tensorstats.jax import conv_metadata, dense_metadata, record_pytree  # noqa: E402

DN = ("NHWC", "HWIO", "NHWC")


@pytest.fixture(autouse=True)
def float64():
    """Double precision for these tests only (the references are exact to 1e-10)."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def conv(x, w, *, stride, padding, dilation, groups):
    return jax.lax.conv_general_dilated(x, w, stride, padding, rhs_dilation=dilation,
                                        dimension_numbers=DN, feature_group_count=groups)


def brute_force(f, x, g):
    """Norms (sample, c1, c2) of each output channel's share of ∂L/∂x, by masked VJPs."""
    _, vjp = jax.vjp(f, x)
    norms = []
    for c in range(g.shape[-1]):
        (gx,) = vjp(jnp.where(jnp.arange(g.shape[-1]) == c, g, 0.0))
        norms.append(jnp.sqrt((gx**2).reshape(gx.shape[0], -1, gx.shape[-1]).sum(1)))
    return np.stack(norms, 1)


@pytest.mark.parametrize("case", [
    {"stride": (2, 1), "padding": ((1, 1), (0, 2)), "dilation": (1, 2), "groups": 1},
    {"stride": (1, 1), "padding": "SAME", "dilation": (1, 1), "groups": 2},
])
def test_conv_emission_absorption_and_meanfield(store, case):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(0.5, 1.0, size=(5, 9, 8, 4)))
    w = jnp.asarray(rng.normal(size=(3, 3, 4 // case["groups"], 6)))  # HWIO
    b = jnp.asarray(rng.normal(size=6))
    kw = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    z = conv(x, w, **kw) + b
    g = jax.grad(lambda z: jnp.sum(jnp.tanh(z) * jnp.cos(z)))(z)
    meta = conv_metadata(in_features=4, features=6, kernel_size=(3, 3), strides=case["stride"],
                         padding=case["padding"], kernel_dilation=case["dilation"],
                         feature_group_count=case["groups"])
    modules = {"conv": meta}
    with ts.Recorder(store) as rec:
        record_pytree(rec, "weight", {"conv": {"kernel": w, "bias": b}}, step=0, modules=modules)
        for kind, value in (("feature_grad", g), ("feature", z), ("input", x)):
            record_pytree(rec, kind, {"conv": value}, step=0, modules=modules)
    run = ts.open_run(store)
    ds = ts.emission_absorption(run, "conv").compute()
    norms = brute_force(lambda x: conv(x, w, **kw), x, g)  # (N, c1, c2), 0 outside a group
    np.testing.assert_allclose(ds["emission"].values[0], norms.sum(2), rtol=1e-10)
    np.testing.assert_allclose(ds["absorption"].values[0], norms.sum(1), rtol=1e-10)
    mf = ts.meanfield(run, "conv").compute()
    np.testing.assert_allclose(float(mf["observed"][0]), np.var(np.asarray(z)), rtol=1e-10)
    if case["groups"] == 1:  # E[x²] over patches: a conv of x² with ones, per patch entry
        ones = jnp.ones((3, 3, 4, 1))
        mean_square = float(jnp.mean(conv(x**2, ones, **kw))) / (9 * 4)
        predicted = 36 * np.var(np.asarray(w)) * mean_square + np.var(np.asarray(b))
        np.testing.assert_allclose(float(mf["predicted"][0]), predicted, rtol=1e-10)


def test_dense_emission_absorption(store):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(7, 5)))
    w = jnp.asarray(rng.normal(size=(5, 3)))  # (in, out)
    z = x @ w
    g = jax.grad(lambda z: jnp.sum(jnp.sin(z)))(z)
    modules = {"params.Dense_0": dense_metadata(in_features=5, features=3, use_bias=False)}
    with ts.Recorder(store) as rec:
        record_pytree(rec, "weight", {"params": {"Dense_0": {"kernel": w}}}, step=0,
                      modules=modules)
        record_pytree(rec, "feature_grad", {"params": {"Dense_0": g}}, step=0, modules=modules)
    run = ts.open_run(store)
    assert run["weight", "params.Dense_0.kernel"].attrs["module_name"] == "params.Dense_0"
    ds = ts.emission_absorption(run, "params.Dense_0").compute()
    norms = brute_force(lambda x: x @ w, x, g)
    np.testing.assert_allclose(ds["emission"].values[0], norms.sum(2), rtol=1e-12)
    np.testing.assert_allclose(ds["absorption"].values[0], norms.sum(1), rtol=1e-12)


def test_metadata_helpers_check_their_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        conv_metadata(in_features=1, features=1, kernel_size=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="strides"):
        conv_metadata(in_features=1, features=1, kernel_size=(3, 3), strides=(1, 2, 3))
    with pytest.raises(ValueError, match="padding"):
        conv_metadata(in_features=1, features=1, kernel_size=(3, 3), padding="CIRCULAR")
    meta = conv_metadata(in_features=2, features=4, kernel_size=(3,), padding=[(0, 1)])
    assert meta["padding"] == [[0, 1]] and meta["type"] == "Conv1d"


def test_leaves_outside_modules_get_no_attrs(store):
    with ts.Recorder(store) as rec:
        record_pytree(rec, "weight", {"a": {"kernel": jnp.ones((2, 3))}, "ab": jnp.ones(3)},
                      step=0, modules={"a": dense_metadata(in_features=2, features=3)})
    run = ts.open_run(store)
    assert run["weight", "a.kernel"].attrs["module"]["type"] == "Linear"
    assert "module" not in run["weight", "ab"].attrs  # "ab" is not inside module "a"
