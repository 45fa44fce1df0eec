"""``python -m tensorstats``: the same as the ``tensorstats`` command."""

from .cli import main

if __name__ == "__main__":
    main()
