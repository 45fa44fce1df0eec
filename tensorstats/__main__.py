"""``python -m tensorstats``: the same as the ``tensorstats`` command."""

from .cli import main

main()
