"""``python -m tensorstats.demo``: train the seed paper's CNN twice, record it, report on it.

The seed paper ("Distributions in Deep Neural Networks", B. Park) trains a
3-conv CNN under several initialisations and looks at how weights and
pre-activations are distributed before and after training. This demo does the
same at laptop scale, on scikit-learn's bundled handwritten digits (8x8
images, 10 classes; no download):

1. trains the CNN with Kaiming and with Xavier initialisation (Adam, batch 64),
   each run recorded with :func:`tensorstats.torch.watch` every 10 steps:
   weights, gradients, pre-activations and their gradients, plus the
   pre-activations on fixed ``train``, ``valid`` and ``random`` probe batches;
   and the seed paper's channel-wise gradient emission/absorption, computed
   at capture time;
2. prints the automatic findings of :func:`tensorstats.report.findings`
   (first NaN/Inf, the layers whose spread or kurtosis moved most);
3. writes the HTML report of both runs side by side
   (``demo-output/report/index.html``, :func:`tensorstats.report.write_report`:
   loss, moment trajectories, normality heatmap, distributions before and
   after, shift from init, correlations with the loss, emission/absorption)
   and prints where it is. The same report comes from the command line:
   ``tensorstats report demo-output/kaiming.zarr demo-output/xavier.zarr -o DIR``.

Without PyTorch it falls back to a NumPy MLP recorded with the bare
:class:`~tensorstats.Recorder` (see :mod:`tensorstats.demo_numpy`).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

import tensorstats as ts

INITS = ("kaiming", "xavier")


def load_digits_split(seed: int = 0) -> dict[str, np.ndarray]:
    """Digits as (N, 1, 8, 8) float32, standardised, split 80/20."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    x = (x - x.mean()) / x.std()
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return {"x_train": x[order[:cut]], "y_train": y[order[:cut]],
            "x_valid": x[order[cut:]], "y_valid": y[order[cut:]]}


def seed_cnn(init: str, seed: int = 0) -> Any:
    """The seed paper's CNN (three 3x3 convs, two max-pools, two Linear), for 1x8x8 inputs."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential()
    model.add_module("conv1", nn.Conv2d(1, 16, 3, 1, 1))
    model.add_module("relu1", nn.ReLU())
    model.add_module("pool1", nn.MaxPool2d(2))
    model.add_module("conv2", nn.Conv2d(16, 16, 3, 1, 1))
    model.add_module("relu2", nn.ReLU())
    model.add_module("pool2", nn.MaxPool2d(2))
    model.add_module("conv3", nn.Conv2d(16, 16, 3, 1, 1))
    model.add_module("relu3", nn.ReLU())
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc1", nn.Linear(16 * 2 * 2, 128))
    model.add_module("relu4", nn.ReLU())
    model.add_module("fc2", nn.Linear(128, 10))
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "kaiming":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif init == "xavier":
                nn.init.xavier_normal_(m.weight)
            else:
                raise ValueError(f"unknown init {init!r}; choose from {INITS}")
            nn.init.zeros_(m.bias)
    return model


def train(path: str, init: str, data: dict[str, np.ndarray], *, steps: int = 300,
          every: int = 10, batch: int = 64, lr: float = 1e-3, seed: int = 0) -> dict[str, Any]:
    """Train one run and record it into ``path`` (overwritten if it is a store)."""
    import torch
    import torch.nn.functional as F

    from tensorstats.torch import DEFAULT_KINDS, watch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model = seed_cnn(init, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    g = torch.Generator().manual_seed(seed)
    probes = {"train": x[:256], "valid": torch.from_numpy(data["x_valid"][:256]),
              "random": torch.randn(256, 1, 8, 8, generator=g)}
    attrs = {"model": "seed-paper CNN (3 conv + 2 linear) on 1x8x8 digits", "init": init,
             "optimizer": "Adam", "lr": lr, "batch_size": batch, "seed": seed,
             "data": "scikit-learn digits, 80% train"}
    t0 = time.perf_counter()
    kinds = (*DEFAULT_KINDS, "emission", "absorption")
    with ts.Recorder(path, mode="w", attrs=attrs) as rec, \
            watch(model, rec, every=ts.every(every), probes=probes, kinds=kinds) as w:
        for step in range(steps):
            idx = torch.randint(0, len(x), (batch,), generator=g)
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            w.step(step, loss=loss.item())
        with torch.no_grad():
            pred = model(torch.from_numpy(data["x_valid"])).argmax(1).numpy()
        rec.record_scalar("valid_accuracy", float((pred == data["y_valid"]).mean()),
                          step=steps - 1)
    return {"seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-output",
                        help="folder for the run stores and the report (stores are overwritten)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:  # pragma: no cover - make demo installs torch
        from tensorstats import demo_numpy

        demo_numpy.main(["--out", os.path.join(args.out, "run.zarr"), "--steps",
                         str(args.steps), "--every", str(args.every)])
        return
    os.makedirs(args.out, exist_ok=True)
    data = load_digits_split()
    paths = {init: os.path.join(args.out, f"{init}.zarr") for init in INITS}
    for init, path in paths.items():
        result = train(path, init, data, steps=args.steps, every=args.every)
        print(f"trained {init}: {args.steps} steps in {result['seconds']:.1f}s -> {path}")
    from tensorstats.report import findings, write_report

    runs = ts.open_runs(paths)
    print("\nfindings:")
    for line in findings(runs):
        print(f"  - {line}")
    t0 = time.perf_counter()
    index = write_report(runs, os.path.join(args.out, "report"), overwrite=True)
    print(f"\nHTML report written in {time.perf_counter() - t0:.0f}s: {index}")
    print(f"open it in a browser: file://{os.path.abspath(index)}")
    print(f"or from the command line: tensorstats info {paths['kaiming']}")


if __name__ == "__main__":
    main()
