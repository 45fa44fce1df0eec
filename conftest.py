"""Repository-level pytest set-up: skip doctests of adapters whose framework is absent."""

import importlib.util

collect_ignore = [
    f"tensorstats/{name}.py"
    for name, package in (("torch", "torch"), ("jax", "jax"), ("demo", "torch"))
    if importlib.util.find_spec(package) is None
]
