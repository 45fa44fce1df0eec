"""The names of dimensions, in one place.

Collectors write these names, readers check them and analyses keep them.
Nothing else in the package spells a dimension name as a literal.
"""

from __future__ import annotations

from typing import Final

STEP: Final = "step"
"""Training step: the append dimension of every series."""

CHANNEL: Final = "channel"
"""Output channel / unit: axis 0 of a weight, axis 1 of an NCHW feature."""

RUN: Final = "run"
"""Added by :func:`tensorstats.open_runs` when several runs are stacked."""

RANK: Final = "rank"
"""Leading dimension of a series each process of a multi-process run wrote for itself."""

TEST: Final = "test"
"""Leading dimension of normality results (one entry per test)."""

LAG: Final = "lag"
"""Lag dimension of correlation results."""

ELEMENT: Final = "element"
"""Sampled element positions of a subsampled series (``max_elements``)."""

MOMENT: Final = "moment"
"""Which streaming moment (count, mean, m2, ...) in a series' ``moments`` array."""

POSITION: Final = "position"
"""Coordinate on ``element``: the flat position each sampled element came from."""

SAMPLE: Final = "sample"
"""Batch axis of recorded features, inputs and their gradients (and of emission/absorption)."""

TOKEN: Final = "token"
"""Sequence position of a Linear's or attention's (batch, tokens, features) tensors."""

OUT_CHANNEL: Final = "out_channel"
"""Output channel c₁ of a Conv/Linear layer in emission results (emitted from)."""

IN_CHANNEL: Final = "in_channel"
"""Input channel c₂ of a Conv/Linear layer in absorption results (absorbed by)."""

LAYER: Final = "layer"
"""One entry per layer, where results of several layers are put side by side (plots)."""

POOLED: Final = "__pooled__"
"""Core dim into which an analysis pools every dim not in ``by`` (never in results)."""

DEFAULT_BY: Final = (RUN, STEP, CHANNEL)
"""Dims an analysis keeps by default: whichever of these its input has."""

RESERVED: Final = frozenset({STEP, CHANNEL, RUN, RANK, TEST, LAG, ELEMENT, MOMENT, POSITION})
"""Names a user may not give to the other axes of a recorded tensor."""


def default_dim(axis: int) -> str:
    """Name of an unnamed, non-channel axis of the recorded tensor.

    The number is the axis's position in the tensor as it was recorded, so a
    NCHW feature recorded with ``channel_axis=1`` gets ``dim_0, dim_2, dim_3``.

    Examples
    --------
    >>> default_dim(2)
    'dim_2'
    """
    return f"dim_{axis}"
