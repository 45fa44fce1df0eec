"""tensorstats.jax.record_pytree: naming, layouts, values, errors, lazy import."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

import tensorstats as ts  # noqa: E402
from tensorstats.jax import record_pytree  # noqa: E402


def _params(seed: int) -> dict:
    """A nested tree of dicts, a list and a tuple, float32 leaves."""
    rng = np.random.default_rng(seed)

    def a(*shape):
        return jnp.asarray(rng.standard_normal(shape), dtype=jnp.float32)

    return {
        "encoder": {"layers": [{"w": a(3, 4), "b": a(4)}, {"w": a(4, 2), "b": a(2)}]},
        "head": (a(2, 5), a(5)),
        "conv": {"kernel": a(3, 3, 2, 6)},  # HWIO
    }


EXPECTED = [  # jax flattening order: dict keys sorted, sequences in order
    "conv.kernel",
    "encoder.layers.0.b", "encoder.layers.0.w",
    "encoder.layers.1.b", "encoder.layers.1.w",
    "head.0", "head.1",
]


def _leaf(tree, name):
    for key in name.split("."):
        tree = tree[int(key)] if isinstance(tree, (list, tuple)) else tree[key]
    return tree


def test_nested_tree_names_and_values(store):
    trees = [_params(0), _params(1)]
    with ts.Recorder(store) as rec:
        for step, tree in enumerate(trees):
            assert record_pytree(rec, "weight", tree, step=step) == EXPECTED

    run = ts.open_run(store)
    assert run.layers("weight") == sorted(EXPECTED)
    for name in EXPECTED:
        da = run["weight", name]
        leaves = [np.asarray(_leaf(t, name)) for t in trees]
        ndim = leaves[0].ndim
        expected = np.stack([np.moveaxis(leaf, -1, 0) for leaf in leaves])
        np.testing.assert_array_equal(da.values, expected)
        assert da.dims[:2] == ("step", "channel")
        assert da.dims[2:] == tuple(f"dim_{i}" for i in range(ndim - 1))
        assert da.sizes["channel"] == leaves[0].shape[-1]
        np.testing.assert_array_equal(da["step"].values, [0, 1])
        assert da.attrs["channel_axis"] == ndim - 1
        assert da.attrs["source_shape"] == list(leaves[0].shape)
        assert da.attrs["source_dtype"] == "float32"
        assert da.dtype == np.float32


def test_prefix_and_attribute_paths(store):
    from collections import namedtuple

    Layer = namedtuple("Layer", ["kernel", "bias"])
    tree = {"Dense_0": Layer(jnp.ones((2, 3)), jnp.arange(3.0)), "skip": None}
    with ts.Recorder(store) as rec:
        names = record_pytree(rec, "weight", tree, step=0, prefix="student")
    assert names == ["student.Dense_0.kernel", "student.Dense_0.bias"]
    run = ts.open_run(store)
    assert run.layers("weight") == sorted(names)
    np.testing.assert_array_equal(run["weight", "student.Dense_0.bias"].values, [[0, 1, 2]])


# --------------------------------------------------------------- a real MLP
def _model(params, x):
    z1 = x @ params["dense1"]["kernel"] + params["dense1"]["bias"]
    h = jnp.tanh(z1)
    z2 = h @ params["dense2"]["kernel"] + params["dense2"]["bias"]
    return z2, {"dense1": z1, "dense2": z2}


def _loss(params, x, y):
    logits, pre = _model(params, x)
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(logp[jnp.arange(x.shape[0]), y]), pre


def _np_forward_backward(p, x, y):
    """Loss, pre-activations and gradients of the MLP, by hand, in float64 NumPy."""
    w1, b1 = p["dense1.kernel"], p["dense1.bias"]
    w2, b2 = p["dense2.kernel"], p["dense2.bias"]
    n = x.shape[0]
    z1 = x @ w1 + b1
    h = np.tanh(z1)
    z2 = h @ w2 + b2
    zs = z2 - z2.max(1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(1, keepdims=True))
    loss = -logp[np.arange(n), y].mean()
    dz2 = np.exp(logp)
    dz2[np.arange(n), y] -= 1
    dz2 /= n
    dz1 = (dz2 @ w2.T) * (1 - h**2)
    grads = {"dense1.kernel": x.T @ dz1, "dense1.bias": dz1.sum(0),
             "dense2.kernel": h.T @ dz2, "dense2.bias": dz2.sum(0)}
    return loss, {"dense1": z1, "dense2": z2}, grads


def test_mlp_weights_grads_features(store):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 5)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    params = {
        "dense1": {"kernel": jnp.asarray(rng.standard_normal((5, 7)) * 0.5, jnp.float32),
                   "bias": jnp.asarray(rng.standard_normal(7) * 0.1, jnp.float32)},
        "dense2": {"kernel": jnp.asarray(rng.standard_normal((7, 3)) * 0.5, jnp.float32),
                   "bias": jnp.asarray(rng.standard_normal(3) * 0.1, jnp.float32)},
    }
    lr = 0.5
    grad_fn = jax.jit(jax.value_and_grad(_loss, has_aux=True))
    losses = []
    with ts.Recorder(store) as rec:
        for step in range(3):
            (loss, pre), grads = grad_fn(params, x, y)
            record_pytree(rec, "weight", params, step=step)
            record_pytree(rec, "grad", grads, step=step)
            assert record_pytree(rec, "feature", pre, step=step) == ["dense1", "dense2"]
            rec.record_scalar("loss", loss, step=step)
            losses.append(float(loss))
            params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

    run = ts.open_run(store)
    names = ["dense1.bias", "dense1.kernel", "dense2.bias", "dense2.kernel"]
    assert run.layers("weight") == names
    assert run.layers("grad") == names
    assert run.layers("feature") == ["dense1", "dense2"]
    x64 = x.astype(np.float64)
    for step in range(3):
        # Stored weights, back in their original layout (channel was the last axis).
        w = {n: np.moveaxis(run["weight", n].values[step].astype(np.float64), 0, -1)
             for n in names}
        loss, pre, grads = _np_forward_backward(w, x64, y)
        assert losses[step] == pytest.approx(loss, rel=1e-5)
        np.testing.assert_allclose(run.scalars["loss"].values[step], loss, rtol=1e-5)
        for n in names:
            stored = run["grad", n].values[step]
            np.testing.assert_allclose(stored, np.moveaxis(grads[n], -1, 0),
                                       rtol=1e-4, atol=1e-6, err_msg=f"grad {n} step {step}")
        for n in ("dense1", "dense2"):
            da = run["feature", n]
            assert da.dims == ("step", "channel", "dim_0")  # (batch, features) -> features
            np.testing.assert_allclose(da.values[step], pre[n].T, rtol=1e-5, atol=1e-5)
        if step > 0:  # the SGD update relates consecutive stored steps
            prev = {n: run["weight", n].values[step - 1].astype(np.float64) for n in names}
            prev_g = {n: run["grad", n].values[step - 1].astype(np.float64) for n in names}
            for n in names:
                np.testing.assert_allclose(run["weight", n].values[step],
                                           prev[n] - lr * prev_g[n], rtol=1e-5, atol=1e-6)
    assert losses[-1] < losses[0]


def test_numpy_backprop_matches_finite_differences():
    """The reference gradients above are themselves checked, independently of JAX."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5))
    y = rng.integers(0, 3, 6)
    p = {"dense1.kernel": rng.standard_normal((5, 7)), "dense1.bias": rng.standard_normal(7),
         "dense2.kernel": rng.standard_normal((7, 3)), "dense2.bias": rng.standard_normal(3)}
    _, _, grads = _np_forward_backward(p, x, y)
    eps = 1e-6
    for n, idx in [("dense1.kernel", (2, 4)), ("dense1.bias", (6,)),
                   ("dense2.kernel", (0, 1)), ("dense2.bias", (2,))]:
        plus = {k: v.copy() for k, v in p.items()}
        minus = {k: v.copy() for k, v in p.items()}
        plus[n][idx] += eps
        minus[n][idx] -= eps
        loss_plus = _np_forward_backward(plus, x, y)[0]
        loss_minus = _np_forward_backward(minus, x, y)[0]
        fd = (loss_plus - loss_minus) / (2 * eps)
        assert grads[n][idx] == pytest.approx(fd, rel=1e-6, abs=1e-9)


# ------------------------------------------------------------- dtypes, 0-d
def test_bfloat16_leaf(store):
    rng = np.random.default_rng(2)
    leaves = [jnp.asarray(rng.standard_normal((4, 3)), dtype=jnp.bfloat16) for _ in range(2)]
    with ts.Recorder(store) as rec:
        for step, leaf in enumerate(leaves):
            record_pytree(rec, "weight", {"w": leaf}, step=step)
    da = ts.open_run(store)["weight", "w"]
    assert da.attrs["source_dtype"] == "bfloat16"
    assert da.dtype == np.float32
    expected = np.stack([np.asarray(leaf.astype(jnp.float32)).T for leaf in leaves])
    np.testing.assert_array_equal(da.values, expected)


def test_zero_d_leaves_numbers_and_callable_channel_axis(store):
    tree = {
        "scale": jnp.float32(2.5),
        "count": 3,                                   # a Python number is a 0-d leaf
        "torch_style": {"weight": jnp.arange(6.0).reshape(2, 3)},   # (out, in)
        "kernel": jnp.arange(12.0).reshape(3, 4),                    # (in, out)
        "no_channel": jnp.arange(5.0),
    }
    seen = []

    def axis(name, leaf):
        seen.append((name, leaf.shape))
        if name == "no_channel":
            return None
        return 0 if name.startswith("torch_style.") else -1

    with ts.Recorder(store) as rec:
        names = record_pytree(rec, "weight", tree, step=0, channel_axis=axis)
        record_pytree(rec, "weight", tree, step=1, channel_axis=axis)
    assert names == ["count", "kernel", "no_channel", "scale", "torch_style.weight"]
    # The callable is consulted only for leaves with axes.
    assert seen[:3] == [("kernel", (3, 4)), ("no_channel", (5,)),
                        ("torch_style.weight", (2, 3))]

    run = ts.open_run(store)
    scale = run["weight", "scale"]
    assert scale.dims == ("step",)
    assert scale.attrs["channel_axis"] is None
    np.testing.assert_array_equal(scale.values, [2.5, 2.5])
    count = run["weight", "count"]
    assert count.dims == ("step",)
    np.testing.assert_array_equal(count.values, [3, 3])

    tw = run["weight", "torch_style.weight"]
    assert tw.dims == ("step", "channel", "dim_1")
    np.testing.assert_array_equal(tw.values[0], np.arange(6.0).reshape(2, 3))
    k = run["weight", "kernel"]
    assert k.dims == ("step", "channel", "dim_0")
    np.testing.assert_array_equal(k.values[0], np.arange(12.0).reshape(3, 4).T)
    nc = run["weight", "no_channel"]
    assert nc.dims == ("step", "dim_0")
    np.testing.assert_array_equal(nc.values[1], np.arange(5.0))


def test_channel_axis_none_and_int(store):
    tree = {"a": jnp.ones((2, 3)), "b": jnp.ones((4, 5))}
    with ts.Recorder(store) as rec:
        record_pytree(rec, "weight", tree, step=0, channel_axis=None)
        record_pytree(rec, "feature", tree, step=0, channel_axis=0)
    run = ts.open_run(store)
    assert run["weight", "b"].dims == ("step", "dim_0", "dim_1")
    assert run["feature", "b"].dims == ("step", "channel", "dim_1")
    assert run["feature", "b"].sizes["channel"] == 4


def test_single_leaf_with_prefix_and_jax_step(store):
    z = jnp.arange(6.0).reshape(2, 3)
    with ts.Recorder(store) as rec:
        assert record_pytree(rec, "feature", z, step=jnp.asarray(7), prefix="logits") == [
            "logits"]
    da = ts.open_run(store)["feature", "logits"]
    np.testing.assert_array_equal(da["step"].values, [7])
    np.testing.assert_array_equal(da.values[0], np.asarray(z).T)


# ------------------------------------------------------------------ errors
def test_single_leaf_without_prefix_is_an_error(store):
    with ts.Recorder(store) as rec, pytest.raises(ValueError, match="prefix"):
        record_pytree(rec, "weight", jnp.ones((2, 3)), step=0)
    assert ts.open_run(store).kinds == []


def test_string_leaf_is_an_error_naming_the_path(store):
    tree = {"a": jnp.ones(3), "config": {"activation": "relu"}}
    with ts.Recorder(store) as rec, pytest.raises(TypeError) as info:
        record_pytree(rec, "weight", tree, step=0)
    msg = str(info.value)
    assert "config.activation" in msg and "str" in msg
    assert ts.open_run(store).kinds == []  # "a" comes first but nothing was written


def test_object_leaf_is_an_error(store):
    with ts.Recorder(store) as rec, pytest.raises(TypeError, match="fn"):
        record_pytree(rec, "weight", {"fn": object()}, step=0)


def test_duplicate_names_are_an_error(store):
    tree = {"a.b": jnp.ones(2), "a": {"b": jnp.ones(2)}}
    with ts.Recorder(store) as rec, pytest.raises(ValueError, match="'a.b'"):
        record_pytree(rec, "weight", tree, step=0)
    assert ts.open_run(store).kinds == []


def test_bad_channel_axis_is_checked_before_writing(store):
    tree = {"a": jnp.ones((2, 3)), "b": jnp.ones(4)}
    with ts.Recorder(store) as rec:
        with pytest.raises(ValueError, match="'b'"):
            record_pytree(rec, "weight", tree, step=0, channel_axis=1)
        with pytest.raises(TypeError, match="channel_axis"):
            record_pytree(rec, "weight", tree, step=0, channel_axis="last")
        with pytest.raises(TypeError, match="'a'"):
            record_pytree(rec, "weight", tree, step=0, channel_axis=lambda n, x: 0.5)
    assert ts.open_run(store).kinds == []


def test_tracer_is_an_error(store):
    with ts.Recorder(store) as rec:
        @jax.jit
        def f(x):
            record_pytree(rec, "feature", {"x": x}, step=0)
            return x

        with pytest.raises(TypeError, match="tracer"):
            f(jnp.ones(3))


def test_recorder_errors_pass_through(store):
    with ts.Recorder(store) as rec:
        record_pytree(rec, "weight", {"a": jnp.ones(2)}, step=0)
        with pytest.raises(ValueError, match="steps must increase"):
            record_pytree(rec, "weight", {"a": jnp.ones(2)}, step=0)
        with pytest.raises(ValueError, match="shape"):
            record_pytree(rec, "weight", {"a": jnp.ones(3)}, step=1)


def test_empty_tree_records_nothing(store):
    with ts.Recorder(store) as rec:
        assert record_pytree(rec, "weight", {"a": None, "b": []}, step=0) == []


# ------------------------------------------------------------------ imports
def test_import_tensorstats_does_not_import_jax():
    code = ("import sys, tensorstats, tensorstats.jax\n"
            "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)\n"
            "assert tensorstats.jax.record_pytree.__module__ == 'tensorstats.jax'\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_module_imports_without_jax_and_explains_when_called():
    code = ("import sys\n"
            "sys.modules['jax'] = None  # as if JAX were not installed\n"
            "import tensorstats.jax\n"
            "try:\n"
            "    tensorstats.jax.record_pytree(None, 'weight', {}, step=0)\n"
            "except ImportError as e:\n"
            "    assert 'tensorstats[jax]' in str(e), e\n"
            "else:\n"
            "    raise AssertionError('no ImportError')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
