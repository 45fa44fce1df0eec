"""Record a pure-JAX training loop with ``tensorstats.jax.record_pytree``.

Trains a small MLP (64 -> 32 -> 10, tanh) on scikit-learn's digits with
hand-written minibatch SGD. Every 10 steps it records the parameters
("weight"), their gradients ("grad") and the pre-activations ("feature",
returned by the model as an auxiliary output); the loss is recorded every
step. Then it reads the run back lazily and prints it.

Run:  python examples/jax_loop.py [out.zarr]

With Flax, the pre-activations need not be returned by hand: apply the model
with ``capture_intermediates=True`` and record what it captured, e.g.

    logits, state = model.apply({"params": params}, x,
                                capture_intermediates=True, mutable=["intermediates"])
    record_pytree(rec, "feature", state["intermediates"], step=step)

which names each layer's output ``Dense_0.__call__.0`` and so on. The Flax
params tree records as is: ``record_pytree(rec, "weight", params, step=step)``
gives ``Dense_0.kernel`` (``(in, out)``: the default ``channel_axis=-1`` makes
the output units the ``channel`` dim). Flax is not needed for this example.
"""

import itertools
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits

import tensorstats as ts
from tensorstats.jax import record_pytree

out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp() + "/jax_loop.zarr"

digits = load_digits()
x_all = jnp.asarray(digits.data / 16.0, dtype=jnp.float32)    # (1797, 64)
y_all = jnp.asarray(digits.target)                            # (1797,) labels 0..9


def init(key, sizes=(64, 32, 10)):
    params = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        key, sub = jax.random.split(key)
        params[f"dense{i + 1}"] = {
            "kernel": jax.random.normal(sub, (n_in, n_out)) * jnp.sqrt(1.0 / n_in),  # (in, out)
            "bias": jnp.zeros(n_out),
        }
    return params


def model(params, x):
    """Logits, and the pre-activations of each layer as an auxiliary output."""
    z1 = x @ params["dense1"]["kernel"] + params["dense1"]["bias"]    # (batch, 32)
    z2 = jnp.tanh(z1) @ params["dense2"]["kernel"] + params["dense2"]["bias"]  # (batch, 10)
    return z2, {"dense1": z1, "dense2": z2}


def loss_fn(params, x, y):
    logits, pre = model(params, x)
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1)), pre


@jax.jit
def train_step(params, x, y, lr):
    (loss, pre), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
    new_params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)  # plain SGD
    return new_params, loss, grads, pre


params = init(jax.random.key(0))
rng = np.random.default_rng(0)
with ts.Recorder(out, attrs={"model": "mlp 64-32-10", "framework": "jax"}) as rec:
    for step in range(300):
        idx = rng.choice(x_all.shape[0], 128, replace=False)
        new_params, loss, grads, pre = train_step(params, x_all[idx], y_all[idx], 0.5)
        rec.record_scalar("loss", loss, step=step)
        if step % 10 == 0:
            # The params the gradients were taken at, so weight and grad match per step.
            record_pytree(rec, "weight", params, step=step)   # dense1.kernel, dense1.bias, ...
            record_pytree(rec, "grad", grads, step=step)
            record_pytree(rec, "feature", pre, step=step)     # (batch, features): channel last
        params = new_params

run = ts.open_run(out)
print(run)
print("loss at steps 0, 100, 299:", run.scalars["loss"].sel(step=[0, 100, 299]).values)
w = run["weight", "dense1.kernel"]
print("dense1.kernel dims:", w.dims)
print("dense1.kernel std over training:", w.std(["channel", "dim_0"]).values[::5].round(4))
z = run["feature", "dense1"]
print("dense1 pre-activation std over training:", z.std(["channel", "dim_0"]).values[::5].round(3))
