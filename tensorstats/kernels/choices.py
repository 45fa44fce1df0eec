"""Validating a caller's choice of named tests or metrics."""

from __future__ import annotations

from collections.abc import Sequence


def check_choices(chosen: Sequence[str] | str, allowed: Sequence[str], *, argument: str,
                  kind: str) -> tuple[str, ...]:
    """``chosen`` as a tuple, after checking it against ``allowed``; a string is one choice.

    Errors name the argument, the unknown or repeated choice, and what is allowed.

    Examples
    --------
    >>> check_choices("ks", ("ks", "js"), argument="metrics", kind="shift metric")
    ('ks',)
    >>> check_choices(("kl",), ("ks", "js"), argument="metrics", kind="shift metric")
    Traceback (most recent call last):
    ValueError: unknown shift metric 'kl'; choose from ks, js
    """
    chosen = (chosen,) if isinstance(chosen, str) else tuple(chosen)
    if not chosen:
        raise ValueError(f"{argument} is empty; choose from " + ", ".join(allowed))
    for c in chosen:
        if c not in allowed:
            raise ValueError(f"unknown {kind} {c!r}; choose from {', '.join(allowed)}")
    if len(set(chosen)) != len(chosen):
        noun = kind.split()[-1]
        raise ValueError(f"{argument} lists a {noun} twice: {chosen}")
    return chosen
