"""``python -m tensorstats.demo_numpy``: a NumPy MLP recorded with the bare Recorder.

A NumPy multilayer perceptron learns scikit-learn's bundled handwritten
digits (8x8 images, 10 classes; synthetic blobs if scikit-learn is absent).
Every 10 steps the :class:`~tensorstats.Recorder` stores each layer's
``weight``, ``grad``, ``feature`` (pre-activation) and ``feature_grad``; the
loss is stored every step. The run is then opened lazily with
:func:`~tensorstats.open_run` and summarised: the store, then how the spread of
weights and pre-activations moved during training (the seed paper reports that
weights stay centred while their variance grows, and that feature variance
grows with depth).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from typing import Any

import numpy as np

import tensorstats as ts


def load_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Digits from scikit-learn (shipped with the package, no download)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - sklearn is in the dev extra
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 10, 1797)
        centers = rng.standard_normal((10, 64))
        return centers[y] + 0.8 * rng.standard_normal((1797, 64)), y, "synthetic blobs"
    digits = load_digits()
    x = digits.data / 16.0
    return (x - x.mean(0)) / (x.std(0) + 1e-8), digits.target, "scikit-learn digits"


class MLP:
    """Fully connected ReLU network with softmax cross-entropy, trained by SGD."""

    def __init__(self, sizes: list[int], seed: int = 0):
        rng = np.random.default_rng(seed)
        self.names = [f"fc{i + 1}" for i in range(len(sizes) - 1)]
        self.params: dict[str, np.ndarray] = {}
        for name, (n_in, n_out) in zip(self.names, itertools.pairwise(sizes), strict=True):
            # Kaiming-normal init, weight stored (out, in) like torch.nn.Linear
            self.params[f"{name}.weight"] = rng.standard_normal((n_out, n_in)) * np.sqrt(2 / n_in)
            self.params[f"{name}.bias"] = np.zeros(n_out)

    def forward_backward(self, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """One pass: loss, grads, pre-activations and their gradients."""
        acts, pre = [x], {}
        for i, name in enumerate(self.names):
            z = acts[-1] @ self.params[f"{name}.weight"].T + self.params[f"{name}.bias"]
            pre[name] = z
            acts.append(np.maximum(z, 0) if i < len(self.names) - 1 else z)
        logits = acts[-1]
        shifted = logits - logits.max(1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        loss = -logp[np.arange(len(y)), y].mean()
        dz = np.exp(logp)
        dz[np.arange(len(y)), y] -= 1
        dz /= len(y)
        grads, feature_grads = {}, {}
        for i in reversed(range(len(self.names))):
            name = self.names[i]
            feature_grads[name] = dz
            grads[f"{name}.weight"] = dz.T @ acts[i]
            grads[f"{name}.bias"] = dz.sum(0)
            if i:
                dz = (dz @ self.params[f"{name}.weight"]) * (pre[self.names[i - 1]] > 0)
        return {"loss": float(loss), "grads": grads, "features": pre,
                "feature_grads": feature_grads, "logits": logits}


def train(path: str, *, steps: int = 400, every: int = 10, batch: int = 64, lr: float = 0.1,
          seed: int = 0, mode: str = "w") -> dict[str, Any]:
    """Train the MLP on digits, recording into ``path``; returns a small summary."""
    x, y, source = load_data(seed)
    rng = np.random.default_rng(seed)
    model = MLP([64, 128, 64, 10], seed=seed)
    attrs = {"model": "MLP 64-128-64-10", "data": source, "optimizer": "SGD", "lr": lr,
             "batch_size": batch, "init": "kaiming_normal", "seed": seed}
    t0 = time.perf_counter()
    with ts.Recorder(path, mode=mode, attrs=attrs) as rec:
        for step in range(steps):
            idx = rng.choice(len(x), batch, replace=False)
            out = model.forward_backward(x[idx], y[idx])
            rec.record_scalar("loss", out["loss"], step=step)
            if step % every == 0 or step == steps - 1:
                for pname, value in model.params.items():  # values this pass used
                    rec.record("weight", pname, value, step=step)
                    rec.record("grad", pname, out["grads"][pname], step=step)
                for name in model.names:  # (batch, units): channel_axis=1
                    rec.record("feature", name, out["features"][name], step=step, channel_axis=1,
                               dims=("sample",))
                    rec.record("feature_grad", name, out["feature_grads"][name], step=step,
                               channel_axis=1, dims=("sample",))
            for pname, g in out["grads"].items():
                model.params[pname] -= lr * g
        rec.record_scalar("accuracy", float((model.forward_backward(x, y)["logits"].argmax(1)
                                             == y).mean()), step=steps - 1)
    return {"seconds": time.perf_counter() - t0, "model": model}


def summarise(path: str) -> str:
    """A plain-text summary of the recorded run, computed lazily from the store."""
    run = ts.open_run(path)
    lines = [repr(run), ""]
    loss = run.scalars["loss"].dropna("step").values
    accuracy = run.scalars["accuracy"].dropna("step").values[-1]
    lines.append(f"loss: {loss[:10].mean():.3f} (first 10 steps) -> {loss[-10:].mean():.3f} "
                 f"(last 10); accuracy on all digits after training: {accuracy:.1%}")
    lines += ["", "weights: mean and std over all elements, first vs last recorded step",
              f"  {'layer':<12}{'mean0':>9}{'mean1':>9}{'std0':>9}{'std1':>9}{'std1/std0':>11}"]
    for layer in run.layers("weight"):
        if not layer.endswith(".weight"):
            continue
        da = run["weight", layer]
        dims = [d for d in da.dims if d != "step"]
        mean, std = da.mean(dims).values, da.std(dims).values
        lines.append(f"  {layer:<12}{mean[0]:>9.4f}{mean[-1]:>9.4f}{std[0]:>9.4f}"
                     f"{std[-1]:>9.4f}{std[-1] / std[0]:>11.2f}")
    lines += ["", "pre-activations (features): std over batch and units, by depth",
              f"  {'layer':<12}{'std0':>9}{'std1':>9}"]
    for layer in run.layers("feature"):
        std = run["feature", layer].std(["channel", "sample"]).values
        lines.append(f"  {layer:<12}{std[0]:>9.3f}{std[-1]:>9.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("demo-output", "run.zarr"),
                        help="where to write the run store (overwritten if it is one)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args(argv)
    result = train(args.out, steps=args.steps, every=args.every)
    print(f"trained {args.steps} steps in {result['seconds']:.1f}s, recorded into {args.out}\n")
    print(summarise(args.out))
    print(f"\nOpen it yourself:  python -c \"import tensorstats as ts; "
          f"print(ts.open_run('{args.out}'))\"")


if __name__ == "__main__":
    main()
