"""Record a plain NumPy training loop with nothing but ``tensorstats.Recorder``.

Fits a linear softmax classifier to synthetic data with SGD, records the
weight, its gradient and the pre-activation every 5 steps and the loss every
step, then reads the run back lazily.

Run:  python examples/numpy_loop.py [out.zarr]
"""

import sys
import tempfile

import numpy as np

import tensorstats as ts

out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp() + "/numpy_loop.zarr"
rng = np.random.default_rng(0)
x = rng.standard_normal((512, 20))
y = (x[:, :3] @ rng.standard_normal(3) > 0).astype(int)
w = rng.standard_normal((2, 20)) * 0.1

with ts.Recorder(out, attrs={"model": "softmax regression"}) as rec:
    for step in range(100):
        idx = rng.choice(len(x), 64, replace=False)
        z = x[idx] @ w.T                                   # pre-activation (batch, class)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.log(p[np.arange(64), y[idx]]).mean()
        dz = p.copy()
        dz[np.arange(64), y[idx]] -= 1
        grad = dz.T @ x[idx] / 64
        rec.record_scalar("loss", loss, step=step)
        if step % 5 == 0:
            rec.record("weight", "linear.weight", w, step=step)    # channel_axis=0: classes
            rec.record("grad", "linear.weight", grad, step=step)
            rec.record("feature", "linear", z, step=step, channel_axis=1)
        w -= 0.5 * grad

run = ts.open_run(out)
print(run)
print(run["weight", "linear.weight"].std(["channel", "dim_1"]).values)
