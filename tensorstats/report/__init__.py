"""A self-contained offline HTML report of one or several runs.

- :func:`write_report`: ``out_dir/index.html``, one page with the summary,
  the figures (PNG embedded as data URIs; no network, no JavaScript) and a
  listing of the stores. Needs matplotlib (the ``plot`` extra).
- :func:`findings`: the summary's sentences, from per-step moments only
  (cheap; ``tensorstats info`` prints them). Needs no matplotlib.

See ``docs/report.md``.
"""

from .findings import findings
from .write import write_report

__all__ = ["findings", "write_report"]
