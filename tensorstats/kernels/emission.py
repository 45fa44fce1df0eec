"""Channel-wise local-gradient norms of a Conv/Linear layer: the seed paper's emission/absorption.

A layer with weight W (C₁ out, C₂/groups in, kernel k) maps its input A to its
output V; G = ∂L/∂V. The local gradient LG^{c₁→c₂} is the transposed
convolution of G[c₁] with W[c₁, c₂] (an input-sized map, per sample), and
Σ_{c₁} LG^{c₁→c₂} = ∂L/∂A[c₂]. Emission and absorption sum its norms:
Em^{c₁} = Σ_{c₂} ‖LG^{c₁→c₂}‖, Ab^{c₂} = Σ_{c₁} ‖LG^{c₁→c₂}‖.

How it is computed. Write U_k for G[c₁] placed at kernel offset k on the
input grid (the input positions that offset reaches, padding cropped), so that
LG^{c₁→c₂} = Σ_k W[c₁, c₂, k]·U_k. Then

    ‖LG^{c₁→c₂}‖² = wᵀ M w,   M[k, k'] = Σ_q U_k[q]·U_k'[q],   w = W[c₁, c₂, :]

and the Gram matrix M (taps × taps) depends on (sample, c₁) only, not on c₂:
the work is taps²/2 products per input position and (sample, c₁), instead of
C₂·taps for the maps themselves. Everything accumulates in float64. Each U_k
is a window of one zero-padded (and, for a stride above 1, zero-dilated) copy
of G[c₁], so building it is a copy of rows. The compiled kernel
(:func:`local_gradient_sqnorms`, numba, GIL released) is checked against
:func:`local_gradient_sqnorms_reference`, a plain NumPy transposed
convolution, and the tests check both against ``torch.autograd``.

Examples
--------
>>> import numpy as np
>>> from tensorstats.stats.geometry import Geometry
>>> geo = Geometry("conv", 2, 3, (3,), (1,), ((1, 1),), (1,))
>>> rng = np.random.default_rng(0)
>>> g, w = rng.normal(size=(4, 3, 5)), rng.normal(size=(3, 2, 3))
>>> out = emission_absorption(g, w, geo, (5,))
>>> out["emission"].shape, out["absorption"].shape
((4, 3), (4, 2))
>>> ref = local_gradient_sqnorms_reference(g, w, geo, (5,))
>>> bool(np.allclose(out["emission"], np.sqrt(ref).sum(-1)))
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from ..stats.geometry import Geometry
from .blocks import map_threads

SPATIAL = 3
"""The compiled kernel works on 3 spatial dims; 1-d and 2-d layers get leading 1s."""


def _kernel_impl(g, w, pad_size, base, stride, in_size, shift, out):  # pragma: no cover
    """Squared local-gradient norms into ``out`` (N, C₁, C₂/groups); numba-compiled.

    ``g`` (N, C₁, O₀, O₁, O₂); ``w`` (C₁, C₂/groups, taps) float64. ``p`` is
    the zero-padded, stride-dilated copy of g[n, c₁] (flat, C order over
    ``pad_size``): g[o] sits at ``base + o·stride``, and offset k's window
    starts at ``shift[k]``. Indices are computed, not sliced: a view per row
    costs more than the row's copy.
    """
    n_samples, c1 = g.shape[0], g.shape[1]
    o0, o1, o2 = g.shape[2], g.shape[3], g.shape[4]
    c2, taps = w.shape[1], w.shape[2]
    i0, i1, i2 = in_size[0], in_size[1], in_size[2]
    p1, p2 = pad_size[1], pad_size[2]
    b0, b1, b2 = base[0], base[1], base[2]
    s0, s1, s2 = stride[0], stride[1], stride[2]
    q = i0 * i1 * i2
    p = np.zeros(pad_size[0] * p1 * p2)
    u = np.empty(taps * q)
    m = np.empty((taps, taps))
    for n in range(n_samples):
        for c in range(c1):
            for a in range(o0):  # positions never written stay 0 for every (n, c)
                for b in range(o1):
                    dst = ((b0 + a * s0) * p1 + b1 + b * s1) * p2 + b2
                    for e in range(o2):
                        p[dst + e * s2] = g[n, c, a, b, e]
            for k in range(taps):
                f = k * q
                for a in range(i0):
                    for b in range(i1):
                        src = ((a + shift[k, 0]) * p1 + b + shift[k, 1]) * p2 + shift[k, 2]
                        for e in range(i2):
                            u[f + e] = p[src + e]
                        f += i2
            for i in range(taps):
                for j in range(i + 1):
                    acc = 0.0
                    oi, oj = i * q, j * q
                    for f in range(q):
                        acc += u[oi + f] * u[oj + f]
                    m[i, j] = acc
                    m[j, i] = acc
            for d in range(c2):
                acc = 0.0
                for i in range(taps):
                    t = 0.0
                    for j in range(taps):
                        t += m[i, j] * w[c, d, j]
                    acc += w[c, d, i] * t
                out[n, c, d] = acc


_compiled = None


def _kernel():
    """The compiled kernel (compiled once per process, cached on disk by numba)."""
    global _compiled
    if _compiled is None:
        import numba

        # reassoc/contract let the sums vectorise; no "nnan"/"ninf": NaN and Inf propagate.
        _compiled = numba.njit(nogil=True, cache=True,
                               fastmath={"reassoc", "contract", "nsz", "arcp"})(_kernel_impl)
    return _compiled


def _padded3(values: Sequence, fill) -> tuple:
    return (fill,) * (SPATIAL - len(values)) + tuple(values)


def _plan(geometry: Geometry, input_size: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Sizes and offsets of the padded copy and of each kernel offset's window."""
    kernel = _padded3(geometry.kernel_size, 1)
    stride = _padded3(geometry.stride, 1)
    dilation = _padded3(geometry.dilation, 1)
    pad_left = _padded3([p for p, _ in geometry.padding], 0)
    in_size = _padded3(input_size, 1)
    base = [(k - 1) * d for k, d in zip(kernel, dilation, strict=True)]
    # input position q of offset k reads P[q + pad_left - k·d + base]
    pad_size = [i + pl + b for i, pl, b in zip(in_size, pad_left, base, strict=True)]
    shift = [[pl - o * d + b for o, pl, d, b in zip(off, pad_left, dilation, base, strict=True)]
             for off in itertools.product(*(range(k) for k in kernel))]
    return (np.array(pad_size, np.int64), np.array(base, np.int64), np.array(stride, np.int64),
            np.array(in_size, np.int64), np.array(shift, np.int64))


def _check_shapes(g: np.ndarray, w: np.ndarray, geometry: Geometry,
                  input_size: Sequence[int]) -> None:
    """ValueError unless ``g`` and ``w`` have the shapes ``geometry`` gives them."""
    c1 = geometry.out_channels
    if g.ndim < 2 or g.shape[1] != c1:
        raise ValueError(f"gradient of shape {g.shape}: expected (sample, {c1}, ...)")
    if w.shape != geometry.weight_shape:
        raise ValueError(f"weight of shape {w.shape}: expected {geometry.weight_shape}")
    if geometry.kind == "conv" and g.shape[2:] != geometry.output_size(input_size):
        raise ValueError(f"gradient of spatial size {g.shape[2:]}: an input of size "
                         f"{tuple(input_size)} gives outputs of size "
                         f"{geometry.output_size(input_size)}")


def _as_kernel_input(g: np.ndarray, w: np.ndarray, geometry: Geometry,
                     input_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray, tuple]:
    """``g`` as (N, C₁, O₀, O₁, O₂) and ``w`` as (C₁, C₂/groups, taps) float64; checked."""
    _check_shapes(g, w, geometry, input_size)
    c1 = geometry.out_channels
    c2g = geometry.in_channels // geometry.groups
    if geometry.kind == "linear":  # positions (tokens...) are independent: a 1x1 conv
        positions = (math.prod(g.shape[2:]),)
        g = g.reshape(g.shape[0], c1, 1, 1, positions[0])
        input_size = positions
        geometry = Geometry("conv", geometry.in_channels, c1, (1,), (1,), ((0, 0),), (1,))
    else:
        g = g.reshape(g.shape[0], c1, *_padded3(g.shape[2:], 1))
    if g.dtype not in (np.float32, np.float64):
        g = g.astype(np.float64)
    g = np.ascontiguousarray(g)
    w = np.ascontiguousarray(w, dtype=np.float64).reshape(c1, c2g, -1)
    return g, w, _plan(geometry, input_size)


def local_gradient_sqnorms(g: np.ndarray, w: np.ndarray, geometry: Geometry,
                           input_size: Sequence[int], threads: int = 1) -> np.ndarray:
    """‖LG^{c₁→c₂}(x)‖² for every sample x, output channel c₁ and c₂ of c₁'s group.

    Parameters
    ----------
    g : numpy.ndarray
        ∂L/∂V, shape (sample, C₁, *output spatial) (Linear: (sample, C₁,
        *positions)); float32 or float64 (others are cast to float64).
    w : numpy.ndarray
        The weight, (C₁, C₂/groups, *kernel) (Linear: (C₁, C₂)).
    geometry : Geometry
        The layer's geometry.
    input_size : sequence of int
        The spatial size of the layer's input (ignored for Linear).
    threads : int
        Split the samples over this many threads (the kernel releases the GIL).

    Returns
    -------
    numpy.ndarray
        float64, (sample, C₁, C₂/groups): entry [x, c₁, j] belongs to input
        channel c₂ = (c₁ // (C₁/groups))·(C₂/groups) + j.
    """
    g, w, plan = _as_kernel_input(np.asarray(g), np.asarray(w), geometry, input_size)
    out = np.empty((g.shape[0], g.shape[1], w.shape[1]))
    if not out.size:
        return out
    kernel = _kernel()
    parts = min(threads, g.shape[0])
    if parts <= 1:
        kernel(g, w, *plan, out)
        return out
    bounds = np.linspace(0, g.shape[0], parts + 1).astype(int)
    map_threads(lambda i: kernel(g[bounds[i]:bounds[i + 1]], w, *plan,
                                  out[bounds[i]:bounds[i + 1]]), range(parts), parts)
    return out


def norms_to_statistics(sqnorms: np.ndarray, groups: int) -> dict[str, np.ndarray]:
    """Emission (sample, C₁) and absorption (sample, C₂) from squared norms (sample, C₁, C₂/g)."""
    norms = np.sqrt(np.maximum(sqnorms, 0.0))  # NaN stays NaN
    n, c1, c2g = norms.shape
    absorption = norms.reshape(n, groups, c1 // groups, c2g).sum(axis=2)
    return {"emission": norms.sum(axis=-1), "absorption": absorption.reshape(n, groups * c2g)}


def pointwise(geometry: Geometry) -> bool:
    """Whether each output value reads one input value (Linear, unpadded 1x1 conv).

    Then ‖LG^{c₁→c₂}‖ = |W[c₁, c₂]|·‖G[c₁]‖, so emission and absorption are a
    product and a matrix product, with no (sample, C₁, C₂) intermediate.
    """
    return geometry.taps == 1 and not any(p for pair in geometry.padding for p in pair)


def _pointwise_statistics(g: np.ndarray, w: np.ndarray, groups: int) -> dict[str, np.ndarray]:
    n, c1 = g.shape[:2]
    g = g.reshape(n, c1, -1)
    power = np.einsum("ncq,ncq->nc", g, g, dtype=np.float64) if g.shape[2] != 1 \
        else np.square(g[..., 0], dtype=np.float64)
    norm = np.sqrt(power)
    weight = np.abs(np.asarray(w, dtype=np.float64).reshape(c1, -1))
    per_group = c1 // groups
    absorption = [norm[:, i * per_group:(i + 1) * per_group]
                  @ weight[i * per_group:(i + 1) * per_group] for i in range(groups)]
    return {"emission": norm * weight.sum(axis=1), "absorption": np.concatenate(absorption, 1)}


def emission_absorption(g: np.ndarray, w: np.ndarray, geometry: Geometry,
                        input_size: Sequence[int], threads: int = 1) -> dict[str, np.ndarray]:
    """Per-sample emission (sample, C₁) and absorption (sample, C₂); see the module doc.

    ``g``, ``w`` and ``input_size`` as for :func:`local_gradient_sqnorms`.
    """
    if pointwise(geometry):
        g, w = np.asarray(g), np.asarray(w)
        _check_shapes(g, w, geometry, input_size)
        return _pointwise_statistics(g, w, geometry.groups)
    return norms_to_statistics(local_gradient_sqnorms(g, w, geometry, input_size, threads),
                               geometry.groups)


def local_gradient_sqnorms_reference(g: np.ndarray, w: np.ndarray, geometry: Geometry,
                                     input_size: Sequence[int]) -> np.ndarray:
    """Plain NumPy twin of :func:`local_gradient_sqnorms`, for tests.

    Builds every local-gradient map LG^{c₁→c₂} by a transposed convolution
    written as one loop over kernel offsets, then takes its squared norm.
    """
    g = np.asarray(g, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if geometry.kind == "linear":
        positions = g.reshape(g.shape[0], g.shape[1], -1)
        return np.einsum("ncq,cd->ncd", positions**2, w**2)
    full = [(o - 1) * s + d * (k - 1) + 1 for o, s, d, k in
            zip(g.shape[2:], geometry.stride, geometry.dilation, geometry.kernel_size,
                strict=True)]
    lg = np.zeros((g.shape[0], g.shape[1], w.shape[1], *full))
    for offset in itertools.product(*(range(k) for k in geometry.kernel_size)):
        where = tuple(slice(o * d, o * d + (n - 1) * s + 1, s) for o, d, n, s in
                      zip(offset, geometry.dilation, g.shape[2:], geometry.stride, strict=True))
        lg[(..., *where)] += g[:, :, None] * w[(None, slice(None), slice(None), *offset)][
            (..., *([None] * geometry.ndim))]
    crop = tuple(slice(pl, pl + i) for (pl, _), i in zip(geometry.padding, input_size,
                                                          strict=True))
    lg = lg[(..., *crop)]
    return (lg**2).reshape(*lg.shape[:3], -1).sum(-1)
