"""Per-step summaries computed on the tensor's device: exact per-channel moments only.

``watch(..., summaries="moments", summary_every=...)`` runs a second set of
capture handlers whose ``keep`` reduces each tensor, where it lives (a GPU's
memory included), to ``(channels, 9)`` float64 numbers -- count, NaN and Inf
counts, mean, the centred power sums m2, m3, m4 of the finite values, min,
max, the layout of :data:`tensorstats.kernels.moments.PARTIAL_FIELDS` -- and
records them with :meth:`tensorstats.Recorder.record_summary`. Only those
numbers cross to the host.
"""

from __future__ import annotations

from typing import Any

from ..kernels.moments import channel_table
from ._capture import (
    Capture,
    FeatureCapture,
    FeatureGradCapture,
    GradCapture,
    InputCapture,
    LocalGradCapture,
    WeightCapture,
)

SUMMARIZABLE = ("weight", "grad", "local_grad", "feature", "feature_grad", "input")
"""Kinds ``summaries="moments"`` summarises (emission/absorption are small already)."""

LAST_PASS = ("grad", "local_grad")
"""Kinds whose summary describes the last backward pass of a step (the accumulated
gradient); the others describe the first pass, as their raw capture does."""


def device_moments(t: Any, channel_axis: int | None) -> Any:
    """Exact moments of each channel of ``t`` over its finite values, on ``t``'s device.

    Returns a ``(channels, 9)`` float64 tensor (``(1, 9)`` without a channel
    axis), columns as :data:`~tensorstats.kernels.moments.PARTIAL_FIELDS`;
    rows without a finite value have NaN moments. A CPU tensor goes through
    the compiled one-pass kernel of :mod:`tensorstats.kernels.moments` (read
    in place, GIL released). On other devices, two passes of torch ops in
    float64: the mean, then the sums of centred powers (never E[x²] -
    E[x]²); a tensor with no NaN or Inf (the common case) is reduced over its
    other axes in place, without moving the channel axis or masking.

    Examples
    --------
    >>> import torch
    >>> m = device_moments(torch.tensor([[1.0, 2.0, 3.0, float("nan")]]), 0)
    >>> m[0, :5].tolist()
    [3.0, 1.0, 0.0, 2.0, 2.0]
    >>> device_moments(torch.tensor([[1.0, 2.0, 3.0]]), 0)[0].tolist()
    [3.0, 0.0, 0.0, 2.0, 2.0, 0.0, 2.0, 1.0, 3.0]
    """

    x = t.detach()
    if channel_axis is None:
        x, channel_axis = x.reshape(1, -1), 0
    if x.ndim == 1:  # one value per channel (a bias)
        x = x[:, None]
    if x.device.type == "cpu" and x.is_floating_point():
        return _host_moments(x, channel_axis)
    return torch_moments(x, channel_axis)


def torch_moments(x: Any, axis: int) -> Any:
    """:func:`device_moments` with torch ops (any device; what a GPU tensor takes)."""
    import torch

    if x.numel() and x.shape[axis] and bool(torch.isfinite(x).all()):
        return _finite_moments(x, axis)
    return _masked_moments(x, axis)


def _host_moments(x: Any, axis: int) -> Any:
    """:func:`device_moments` of a CPU tensor: the compiled one-pass kernel of
    :mod:`tensorstats.kernels.moments` on the tensor's memory (float32 and
    float64 read in place; half types widened first), GIL released."""
    import torch

    if x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)  # bfloat16 and float16 are exact in float32
    # one thread: a second one competes with torch's OpenMP workers, which keep
    # spinning on the other cores between ops (measured: 23.0 vs 24.6 ms a step)
    return torch.from_numpy(channel_table(x.numpy(), axis, threads=1))


def _finite_moments(x: Any, axis: int) -> Any:
    import torch

    dims = tuple(i for i in range(x.ndim) if i != axis)
    n = x.numel() // x.shape[axis]
    lo, hi = x.amin(dim=dims), x.amax(dim=dims)
    x64 = x.to(torch.float64)
    shape = [1] * x.ndim
    shape[axis] = -1
    mean = x64.mean(dim=dims)
    d = x64 - mean.view(shape)
    d2 = d.square()
    m2, m3, m4 = d2.sum(dims), (d2 * d).sum(dims), d2.square().sum(dims)
    zero = torch.zeros_like(m2)
    return torch.stack([zero + n, zero, zero, mean, m2, m3, m4, lo.to(torch.float64),
                        hi.to(torch.float64)], dim=1)


def _masked_moments(x: Any, axis: int) -> Any:
    import torch

    x = x.movedim(axis, 0)
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    finite = torch.isfinite(x)
    count = finite.sum(dim=1, dtype=torch.float64)
    nan = torch.isnan(x).sum(dim=1, dtype=torch.float64)
    inf = torch.isinf(x).sum(dim=1, dtype=torch.float64)
    zeroed = torch.where(finite, x, 0.0)
    mean = zeroed.sum(dim=1) / count
    d = torch.where(finite, x - mean[:, None], 0.0)
    d2 = d * d
    m2, m3, m4 = d2.sum(dim=1), (d2 * d).sum(dim=1), (d2 * d2).sum(dim=1)
    lo = torch.where(finite, x, torch.inf).amin(dim=1) if x.shape[1] else count * torch.nan
    hi = torch.where(finite, x, -torch.inf).amax(dim=1) if x.shape[1] else count * torch.nan
    out = torch.stack([count, nan, inf, mean, m2, m3, m4, lo, hi], dim=1)
    out[count == 0, 3:] = torch.nan
    return out


class Summarizing(Capture):
    """Mixin over a capture handler: keep device moments instead of host copies."""

    def keep(self, kind: str, key: str, index: int, t: Any, channel_axis: int | None) -> None:
        if index != 0 and kind not in LAST_PASS:
            return
        if key in self.w.shards:  # a shard's moments are not the parameter's
            self.w._warn(f"summary-shard-{key}", f"summaries of sharded parameters (FSDP) are "
                         f"not recorded ({kind} {key!r}); the raw capture records shards")
            return
        axis = self.layout(kind, key).channel_axis
        self.captured[kind].setdefault(key, {})[0] = device_moments(t, axis)

    def record(self, step: int, probe: str | None) -> None:
        rec = self.w.recorder
        for kind, series in self.captured.items():
            for key, parts in series.items():
                m = parts[0].cpu().numpy()
                if self.layout(kind, key).channel_axis is None:
                    m = m[0]
                rec.record_summary(kind, key, m, step=step, probe=probe,
                                   attrs=self.attrs(kind, key))


def summary_handlers() -> dict[str, type[Capture]]:
    """The summarising twin of each summarisable kind's handler."""
    bases = {"weight": WeightCapture, "grad": GradCapture, "local_grad": LocalGradCapture,
             "feature": FeatureCapture, "feature_grad": FeatureGradCapture,
             "input": InputCapture}
    return {kind: type(f"Summary{base.__name__}", (Summarizing, base), {})
            for kind, base in bases.items()}
