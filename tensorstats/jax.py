"""Record JAX pytrees (params, grads, intermediates) with a :class:`~tensorstats.Recorder`.

Importing this module does not import JAX; :func:`record_pytree` imports it
when called. ``import tensorstats`` never imports this module.

See ``docs/jax.md`` for a walk-through and ``examples/jax_loop.py`` for a
complete training loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["conv_metadata", "dense_metadata", "record_pytree"]


def _key_name(key: Any) -> str:
    """One path entry of ``jax.tree_util`` as a name segment."""
    from jax import tree_util as tu

    if isinstance(key, tu.DictKey):
        return str(key.key)
    if isinstance(key, tu.GetAttrKey):
        return str(key.name)
    if isinstance(key, tu.SequenceKey):
        return str(key.idx)
    if isinstance(key, tu.FlattenedIndexKey):
        return str(key.key)
    # A custom key type of a user-registered pytree node: use its own str().
    return str(key)


def _ndim(leaf: Any) -> int:
    ndim = getattr(leaf, "ndim", None)
    if isinstance(ndim, (int, np.integer)):
        return int(ndim)
    return int(np.ndim(leaf))


def _is_number(leaf: Any) -> bool:
    return isinstance(leaf, (bool, int, float, np.bool_, np.number))


def _is_array_like(leaf: Any) -> bool:
    return (isinstance(leaf, np.ndarray) or hasattr(leaf, "__array__")
            or hasattr(leaf, "__dlpack__"))


def record_pytree(
    recorder: Any,
    kind: str,
    tree: Any,
    *,
    step: Any,
    channel_axis: int | Callable[[str, Any], int | None] | None = -1,
    prefix: str | None = None,
    modules: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Record every leaf of a JAX pytree as one step of its own tensor series.

    Each leaf is named by its path in the tree, the path entries joined with
    ``"."``: a dict entry by its key, an attribute (dataclass, namedtuple,
    Flax struct) by its name, a list or tuple entry by its index. So
    ``{"params": {"Dense_0": {"kernel": k}}}`` records ``params.Dense_0.kernel``
    and ``[w, b]`` records ``0`` and ``1``. Leaves are then recorded with
    ``recorder.record(kind, name, leaf, step=step, channel_axis=...)``.

    Parameters
    ----------
    recorder
        An open :class:`tensorstats.Recorder`.
    kind
        What the leaves are: ``"weight"``, ``"grad"``, ``"feature"``, ...
    tree
        Any pytree: nested dicts, lists, tuples, namedtuples, Flax/Equinox
        structures. ``None`` entries are not leaves and are skipped. Leaves
        must be arrays (JAX, NumPy, anything array-like, bfloat16 included)
        or numbers.
    step
        Integer training step (a Python or NumPy integer, or a 0-d integer
        JAX array such as a Flax ``TrainState.step``).
    channel_axis
        Axis of each leaf that is the ``channel`` dim. The default ``-1``
        fits JAX layouts, which put output channels last: a Dense kernel is
        ``(in, out)``, a Conv kernel ``HWIO``, activations ``(batch, features)``
        or ``NHWC``. ``None`` records no channel dim. A callable
        ``(name, leaf) -> int | None`` chooses per leaf, for mixed layouts.
        0-d leaves are always recorded with ``channel_axis=None`` (the
        callable is not called for them).
    prefix
        Prepended to every name with a ``"."``, e.g. ``"teacher"`` gives
        ``teacher.params.Dense_0.kernel``. Required when ``tree`` is a single
        array, whose path is empty; its name is then ``prefix``.
    modules
        ``{module name: metadata}``: the layer geometry that layer-level
        analyses (``ts.emission_absorption``, ``ts.meanfield``) need, which a
        pytree does not carry (a kernel's shape does not tell a Dense from an
        Embed, nor a conv's strides, padding or dilation). Every leaf whose
        name is a module name, or starts with it and a ``"."``, is recorded
        with ``attrs={"module": metadata, "module_name": name}``. Build the
        metadata with :func:`conv_metadata` and :func:`dense_metadata`.

    Returns
    -------
    list of str
        The names recorded, in the order of ``jax.tree_util`` flattening
        (dict keys sorted). An empty tree records nothing and returns ``[]``.

    Raises
    ------
    TypeError
        A leaf that is neither an array nor a number (a string, an object),
        naming its path; a leaf that is a JAX tracer (``record_pytree`` was
        called inside ``jax.jit``/``jax.grad``; return the values from the
        transformed function and record them outside); a ``channel_axis``
        that is not an int or ``None``.
    ValueError
        A single-leaf tree without ``prefix``; two paths giving the same name
        (``{"a.b": x, "a": {"b": y}}``); a ``channel_axis`` out of range for
        a leaf; and whatever :meth:`Recorder.record` raises (a shape that
        differs from earlier steps, a step that does not increase, ...).

    Notes
    -----
    Names, leaf types and channel axes of the whole tree are checked before
    anything is written, so these errors record nothing. Errors only the
    Recorder can detect (a shape or step that conflicts with earlier steps
    of a series) are raised by the leaf concerned; leaves before it in the
    tree are then already recorded.

    All JAX leaves are fetched from the device together (``jax.device_get``)
    before the first write.

    Examples
    --------
    >>> import os, tempfile
    >>> import jax.numpy as jnp
    >>> import tensorstats as ts
    >>> from tensorstats.jax import record_pytree
    >>> params = {"Dense_0": {"kernel": jnp.ones((3, 4)), "bias": jnp.zeros(4)}}
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> with ts.Recorder(path) as rec:
    ...     for step in range(2):
    ...         record_pytree(rec, "weight", params, step=step)
    ['Dense_0.bias', 'Dense_0.kernel']
    ['Dense_0.bias', 'Dense_0.kernel']
    >>> run = ts.open_run(path)
    >>> run["weight", "Dense_0.kernel"].sizes    # channel = the 4 output units
    Frozen({'step': 2, 'channel': 4, 'dim_0': 3})

    A single array needs a name:

    >>> with ts.Recorder(path, mode="w") as rec:
    ...     record_pytree(rec, "feature", jnp.ones((8, 5)), step=0, prefix="logits")
    ['logits']
    """
    try:
        import jax
    except ImportError as e:
        raise ImportError("record_pytree needs JAX: pip install 'tensorstats[jax]'") from e

    if prefix is not None and (not isinstance(prefix, str) or not prefix):
        raise ValueError(f"prefix must be a non-empty string or None, got {prefix!r}")
    if not (channel_axis is None or callable(channel_axis)
            or (isinstance(channel_axis, (int, np.integer))
                and not isinstance(channel_axis, bool))):
        raise TypeError("channel_axis must be an int, None or a callable (name, leaf) -> "
                        f"int | None, got {channel_axis!r}")
    if (isinstance(step, jax.Array) and step.ndim == 0
            and jax.numpy.issubdtype(step.dtype, jax.numpy.integer)):
        step = int(step)

    flat, _ = jax.tree_util.tree_flatten_with_path(tree)

    # ---- check everything before writing anything
    names: list[str] = []
    seen: dict[str, str] = {}
    for path, leaf in flat:
        shown = jax.tree_util.keystr(path) if path else "<root>"
        if not path and prefix is None:
            raise ValueError(
                f"the tree is a single {type(leaf).__name__} leaf with no path to name it by; "
                "pass prefix='<name>' to name it (or use recorder.record directly)")
        name = ".".join(_key_name(k) for k in path)
        if prefix is not None:
            name = f"{prefix}.{name}" if name else prefix
        if not name:
            raise ValueError(f"the leaf at {shown} gets an empty name; pass a prefix")
        if name in seen:
            raise ValueError(
                f"the leaves at {seen[name]} and {shown} would both be recorded as "
                f"{name!r}; rename one of them")
        seen[name] = shown
        if isinstance(leaf, jax.core.Tracer):
            raise TypeError(
                f"the leaf {name!r} (at {shown}) is a JAX tracer: record_pytree was called "
                "inside a transformed function (jax.jit, jax.grad, ...). Return the values "
                "from it and record them outside")
        if not (_is_array_like(leaf) or _is_number(leaf)):
            raise TypeError(
                f"the leaf {name!r} (at {shown}) is a {type(leaf).__name__} ({leaf!r:.60}), "
                "not an array or a number; keep static configuration out of the tree "
                "you record")
        names.append(name)

    axes: list[int | None] = []
    for name, (_, leaf) in zip(names, flat, strict=True):
        ndim = _ndim(leaf)
        if ndim == 0:
            axes.append(None)
            continue
        ax = channel_axis(name, leaf) if callable(channel_axis) else channel_axis
        if ax is not None:
            if isinstance(ax, bool) or not isinstance(ax, (int, np.integer)):
                raise TypeError(f"channel_axis for leaf {name!r} must be an int or None, "
                                f"got {ax!r}")
            if not -ndim <= ax < ndim:
                raise ValueError(
                    f"channel_axis={ax} is out of range for leaf {name!r} of shape "
                    f"{tuple(np.shape(leaf))} ({ndim} axes)")
            ax = int(ax)
        axes.append(ax)

    attrs = [_module_attrs(name, modules) for name in names]

    # ---- fetch JAX leaves from their devices together, then write
    leaves = [leaf for _, leaf in flat]
    on_device = [i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.Array)]
    fetched = jax.device_get([leaves[i] for i in on_device])
    for i, host in zip(on_device, fetched, strict=True):
        leaves[i] = host
    for name, leaf, ax, attr in zip(names, leaves, axes, attrs, strict=True):
        recorder.record(kind, name, leaf, step=step, channel_axis=ax, attrs=attr)
    return names


def _module_attrs(name: str, modules: Mapping[str, Mapping[str, Any]] | None
                  ) -> dict[str, Any] | None:
    """The series attrs of leaf ``name``: its module's metadata, by the longest matching name."""
    if not modules:
        return None
    hits = [m for m in modules if name == m or name.startswith(m + ".")]
    if not hits:
        return None
    module = max(hits, key=len)
    return {"module": dict(modules[module]), "module_name": module}


def conv_metadata(*, in_features: int, features: int, kernel_size: Sequence[int],
                  strides: int | Sequence[int] = 1, padding: str | Sequence[Any] = "SAME",
                  kernel_dilation: int | Sequence[int] = 1,
                  feature_group_count: int = 1) -> dict[str, Any]:
    """Metadata of a JAX/Flax convolution with an ``HWIO`` kernel and ``NHWC`` inputs.

    The arguments are those of ``flax.linen.Conv`` (plus ``in_features``, the
    input's channel count). ``padding`` is ``"SAME"``, ``"VALID"``, an int,
    or one ``(low, high)`` pair per spatial dim; ``"SAME"`` pads as XLA does,
    the odd zero at the end, which is PyTorch's ``padding="same"`` (stride 1
    only; give explicit pairs for a strided SAME conv).

    Examples
    --------
    >>> conv_metadata(in_features=3, features=16, kernel_size=(3, 3))["type"]
    'Conv2d'
    """
    n = len(kernel_size)
    if n not in (1, 2, 3):
        raise ValueError(f"kernel_size must have 1 to 3 entries, got {kernel_size!r}")

    def per_dim(value: Any, name: str) -> list[int]:
        values = [value] * n if isinstance(value, int) else list(value)
        if len(values) != n or not all(isinstance(v, int) for v in values):
            raise ValueError(f"{name} must be an int or {n} ints, got {value!r}")
        return values

    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"padding {padding!r}: use 'SAME', 'VALID', an int or "
                             "(low, high) pairs")
        pad: Any = padding.lower()
    elif isinstance(padding, int):
        pad = [padding] * n
    else:
        pairs = [tuple(p) if not isinstance(p, int) else (p, p) for p in padding]
        if len(pairs) != n or any(len(p) != 2 for p in pairs):
            raise ValueError(f"padding must give one (low, high) pair per dim, got {padding!r}")
        pad = [[int(lo), int(hi)] for lo, hi in pairs]
    return {"type": f"Conv{n}d", "in_channels": int(in_features), "out_channels": int(features),
            "kernel_size": [int(k) for k in kernel_size], "stride": per_dim(strides, "strides"),
            "padding": pad, "dilation": per_dim(kernel_dilation, "kernel_dilation"),
            "groups": int(feature_group_count), "padding_mode": "zeros", "transposed": False,
            "weight_layout": "HWIO"}


def dense_metadata(*, in_features: int, features: int, use_bias: bool = True) -> dict[str, Any]:
    """Metadata of a JAX/Flax Dense layer (kernel ``(in, out)``).

    Examples
    --------
    >>> dense_metadata(in_features=4, features=2)["type"]
    'Linear'
    """
    return {"type": "Linear", "in_features": int(in_features), "out_features": int(features),
            "bias": bool(use_bias), "weight_layout": "IO"}
