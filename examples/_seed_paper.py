"""Shared pieces of the seed-paper examples: the data, the CNN, the initialisations, training.

"Distributions in Deep Neural Networks" (B. Park) trains a 3-conv CNN on
CIFAR-10 (3x32x32). These examples use scikit-learn's bundled handwritten
digits instead (no download): 8x8 grey images upsampled to 32x32 and repeated
over 3 channels, so the network is exactly the paper's (Table 1):

    conv1 3->16 k3 s1 p1, ReLU, maxpool 2, conv2 16->16, ReLU, maxpool 2,
    conv3 16->16, ReLU, flatten (1024), fc1 1024->512, ReLU, fc2 512->10

with Adam at lr 1e-4, batch 64, no weight decay. ``batchnorm=True`` puts a
BatchNorm2d between each conv and its ReLU (the conv's output, which watch
records as the feature, is then the input of the batch norm).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INITS = ("orthogonal", "kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform",
         "ones", "zeros")
"""The paper's initialisations (Kaiming and Xavier in their normal and uniform forms)."""
CONVS = ("conv1", "conv2", "conv3")
LINEARS = ("fc1", "fc2")
STUDIED = ("conv1", "conv2", "conv3", "fc1")
"""The layers the paper analyses (marked with a star in its Table 1)."""


def load_digits_32(seed: int = 0) -> dict[str, torch.Tensor]:
    """scikit-learn's digits as (N, 3, 32, 32) float32, standardised, split 80/20.

    Bilinear upsampling from 8x8; the three channels are equal. The split is a
    seeded permutation: 1437 training and 360 validation images.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.images / 16.0).astype(np.float32))[:, None]
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = ((x - x.mean()) / x.std()).repeat(1, 3, 1, 1).contiguous()
    y = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    cut = int(0.8 * len(x))
    return {"x_train": x[order[:cut]], "y_train": y[order[:cut]],
            "x_valid": x[order[cut:]], "y_valid": y[order[cut:]]}


def seed_cnn(init: str = "kaiming_normal", *, batchnorm: bool = False, seed: int = 0) -> nn.Module:
    """The paper's CNN with weights from ``init`` (one of :data:`INITS`) and zero biases.

    Zero biases for every initialisation, so that ``zeros`` is all zeros (the
    paper: "all the weights and bias are zero ... no training happens") and
    the inits differ only in their weights. Kaiming uses the ReLU gain.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose from {INITS}")
    torch.manual_seed(seed)
    layers: list[tuple[str, nn.Module]] = []
    for i, (cin, pool) in enumerate(((3, True), (16, True), (16, False)), start=1):
        layers.append((f"conv{i}", nn.Conv2d(cin, 16, 3, 1, 1)))
        if batchnorm:
            layers.append((f"bn{i}", nn.BatchNorm2d(16)))
        layers.append((f"relu{i}", nn.ReLU()))
        if pool:
            layers.append((f"pool{i}", nn.MaxPool2d(2)))
    layers += [("flatten", nn.Flatten()), ("fc1", nn.Linear(1024, 512)), ("relu4", nn.ReLU()),
               ("fc2", nn.Linear(512, 10))]
    model = nn.Sequential(OrderedDict(layers))
    initialise: dict[str, Callable[[torch.Tensor], Any]] = {
        "orthogonal": nn.init.orthogonal_,
        "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
        "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
        "xavier_normal": nn.init.xavier_normal_,
        "xavier_uniform": nn.init.xavier_uniform_,
        "ones": nn.init.ones_,
        "zeros": nn.init.zeros_,
    }
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            initialise[init](m.weight)
            nn.init.zeros_(m.bias)
    return model


def batches(data: dict[str, torch.Tensor], *, epochs: int, batch: int = 64,
            seed: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(step, x, y)`` over ``epochs`` shuffled passes of the training set."""
    g = torch.Generator().manual_seed(seed)
    x, y = data["x_train"], data["y_train"]
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for s in range(0, len(x) - batch + 1, batch):  # full batches only
            idx = order[s:s + batch]
            yield step, x[idx], y[idx]
            step += 1


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``x`` classified as ``y``, in eval mode, train mode restored."""
    was = model.training
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    model.train(was)
    return acc


def steps_per_epoch(data: dict[str, torch.Tensor], batch: int = 64) -> int:
    return len(data["x_train"]) // batch
