"""Emission/absorption of one pass, computed where the gradient lives.

On the CPU the tensors of a convolution are handed (without a copy where they
are contiguous) to the compiled kernel that ``ts.emission_absorption`` uses
offline (:mod:`tensorstats.kernels.emission`), so capture-time and
offline values are the same computation. On another device (a GPU), and for
Linear layers everywhere, the same formulation runs in torch ops on the
tensor's device (:func:`device_statistics`) and only the per-sample,
per-channel results are copied to the host.
"""

from __future__ import annotations

import math
from typing import Any

from ..kernels import emission as kernel
from ..stats.geometry import Geometry

DEVICE_BLOCK_BYTES = 64 * 2**20
"""Samples are processed in blocks whose shifted copies stay under this many bytes."""


def channel_first(grad: Any, geometry: Geometry) -> Any:
    """A Linear's (sample, ..., C₁) gradient as (sample, C₁, ...); a conv's unchanged."""
    return grad.movedim(-1, 1) if geometry.kind == "linear" and grad.ndim > 2 else grad


def device_sqnorms(g: Any, w: Any, geometry: Geometry, input_size: tuple[int, ...]) -> Any:
    """‖LG^{c₁→c₂}‖² (sample, C₁, C₂/groups) in float64 torch ops on ``g``'s device.

    ``g`` is (sample, C₁, *spatial) (Linear: (sample, C₁, *positions)) and
    ``w`` (C₁, C₂/groups, *kernel). The shifted copies U_k of G[c₁] are a
    transposed convolution with one-hot kernels; M = U Uᵀ; ‖LG‖² = wᵀ M w.
    """
    import torch
    import torch.nn.functional as F

    n, c1 = g.shape[:2]
    w = w.detach().to(torch.float64)
    if geometry.kind == "linear":
        power = g.detach().to(torch.float64).reshape(n, c1, -1).square().sum(-1)
        return power[:, :, None] * w.reshape(c1, -1).square()[None]
    taps = geometry.taps
    conv_t = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[geometry.ndim - 1]
    eye = torch.eye(taps, dtype=torch.float64, device=g.device).view(1, taps,
                                                                     *geometry.kernel_size)
    crop = (slice(None), slice(None),
            *(slice(pl, pl + i) for (pl, _), i in zip(geometry.padding, input_size, strict=True)))
    w = w.reshape(c1, w.shape[1], taps)
    full = math.prod((o - 1) * s + d * (k - 1) + 1 for o, s, d, k in zip(
        g.shape[2:], geometry.stride, geometry.dilation, geometry.kernel_size, strict=True))
    block = max(1, DEVICE_BLOCK_BYTES // max(1, c1 * taps * full * 8))
    out = []
    for s in range(0, n, block):
        part = g[s:s + block].detach().to(torch.float64)
        u = conv_t(part.reshape(-1, 1, *part.shape[2:]), eye, stride=geometry.stride,
                   dilation=geometry.dilation)[crop].flatten(2)
        m = (u @ u.transpose(1, 2)).view(part.shape[0], c1, taps, taps)
        out.append(torch.einsum("ncij,cdi,cdj->ncd", m, w, w))
    return torch.cat(out) if out else g.new_zeros((0, c1, w.shape[1]), dtype=torch.float64)


def device_statistics(g: Any, weight: Any, geometry: Geometry,
                      input_size: tuple[int, ...]) -> tuple[Any, Any]:
    """Emission and absorption in torch ops on ``g``'s device; ``g`` channel-first."""
    import torch

    n, c1 = g.shape[:2]
    per = c1 // geometry.groups
    if kernel.pointwise(geometry):  # |W|·‖G‖: no (sample, C₁, C₂) intermediate
        norm = g.to(torch.float64).reshape(n, c1, -1).square().sum(-1).sqrt()
        w = weight.detach().to(torch.float64).reshape(c1, -1).abs()
        absorption = [norm[:, i * per:(i + 1) * per] @ w[i * per:(i + 1) * per]
                      for i in range(geometry.groups)]
        return norm * w.sum(1), torch.cat(absorption, 1)
    norms = device_sqnorms(g, weight, geometry, input_size).clamp_min(0).sqrt()
    absorption = norms.view(n, geometry.groups, per, norms.shape[2]).sum(2)
    return norms.sum(-1), absorption.reshape(n, -1)


def statistics(grad: Any, weight: Any, geometry: Geometry,
               input_size: tuple[int, ...]) -> tuple[Any, Any]:
    """Emission (sample, C₁) and absorption (sample, C₂), float64 tensors on ``grad``'s device."""
    import torch

    g = channel_first(grad.detach(), geometry)
    if g.device.type != "cpu" or kernel.pointwise(geometry):
        # Linear layers are a matrix product: torch's, on its own threads. NumPy's
        # would wake OpenBLAS's threads, which spin on the cores torch trains on.
        return device_statistics(g, weight, geometry, input_size)
    if g.dtype not in (torch.float32, torch.float64):
        g = g.float()
    # One thread: torch's own threads keep the cores busy (a second kernel thread
    # measured +7% step time against +0-2%; docs/benchmarks.md).
    out = kernel.emission_absorption(g.numpy(), weight.detach().double().numpy(), geometry,
                                     input_size, threads=1)
    return torch.from_numpy(out["emission"]), torch.from_numpy(out["absorption"])
