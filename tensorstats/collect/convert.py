"""Turn anything array-like into a NumPy array, without importing a framework.

Handles NumPy arrays and scalars, Python lists and numbers, PyTorch tensors on
any device and in any dtype (``bfloat16`` and ``float16`` included), JAX
arrays, and any object exposing ``__array__`` or ``__dlpack__``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_NARROW_FLOATS = ("bfloat16", "float8")
"""dtype-name prefixes NumPy cannot hold natively; they are widened to float32."""


_TORCH_DTYPE_NAMES: dict[Any, str] = {}


def _torch_to_numpy(t: Any) -> tuple[np.ndarray, str]:
    t = t.detach()
    dtype = t.dtype
    source = _TORCH_DTYPE_NAMES.get(dtype)
    if source is None:
        source = _TORCH_DTYPE_NAMES.setdefault(dtype, str(dtype).removeprefix("torch."))
    if dtype.is_complex:
        raise TypeError(f"complex tensors are not supported (dtype {source})")
    if source.startswith(_NARROW_FLOATS):
        t = t.float()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    return t.numpy(), source


def _is_torch_tensor(value: Any) -> bool:
    mod = type(value).__module__ or ""
    return mod.startswith("torch") and hasattr(value, "detach") and hasattr(value, "numpy")


def to_numpy(value: Any) -> tuple[np.ndarray, str]:
    """Convert ``value`` to a NumPy array and report its original dtype name.

    Returns
    -------
    array, source_dtype
        ``array`` is a NumPy array that NumPy can compute with (narrow float
        types such as bfloat16 are widened to float32, losslessly);
        ``source_dtype`` is the dtype name the value had, e.g. ``"bfloat16"``.

    Examples
    --------
    >>> a, src = to_numpy([[1.0, 2.0]])
    >>> a.dtype.name, src, a.shape
    ('float64', 'float64', (1, 2))
    """
    if isinstance(value, np.ndarray):
        arr = value
    elif _is_torch_tensor(value):
        return _torch_to_numpy(value)
    elif hasattr(value, "__array__") or isinstance(value, (list, tuple, int, float, np.generic)):
        arr = np.asarray(value)
    elif hasattr(value, "__dlpack__"):
        arr = np.from_dlpack(value)
    else:
        raise TypeError(f"cannot convert {type(value).__name__} to an array")
    source = arr.dtype.name
    if source.startswith(_NARROW_FLOATS):  # ml_dtypes (JAX) narrow floats
        arr = arr.astype(np.float32)
    return arr, source
