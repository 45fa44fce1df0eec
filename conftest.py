"""Repository-level pytest set-up: skip doctests of adapters whose framework is absent."""

import importlib.util

_ADAPTERS = {"tensorstats/torch": "torch", "tensorstats/jax.py": "jax",
             "tensorstats/demo.py": "torch", "tensorstats/plot": "matplotlib",
             "tensorstats/report": "matplotlib", "tensorstats/lightning.py": "lightning",
             "tensorstats/hf.py": "transformers"}

collect_ignore = [path for path, package in _ADAPTERS.items()
                  if importlib.util.find_spec(package) is None]
