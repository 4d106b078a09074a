"""Self-checking exercises: the checks that exercise cells call, with hints that say what to do.

An exercise's ``check`` cell first calls :func:`answered` with every name the learner must
fill in, then :func:`check` or :func:`close` for each thing that must hold. In the learner
edition (``mae-nb build learners``) those names are ``...`` until the learner writes the code,
so the check fails with an :class:`ExerciseError` that names what to replace, never with a
``NameError`` or a ``TypeError`` on ``...``.
"""

from __future__ import annotations

import math
from typing import Any

from mae_nb.errors import MaeNbError


class ExerciseError(MaeNbError, AssertionError):
    """An exercise whose check failed, with a hint that says what to do."""


def _unanswered(value: Any) -> bool:
    """Whether ``value`` is still the learner edition's placeholder ``...`` (or a tuple of them)."""
    if value is Ellipsis:
        return True
    if isinstance(value, (tuple, list)) and value:
        return all(item is Ellipsis for item in value)
    return False


def answered(**values: Any) -> None:
    """Raise :class:`ExerciseError` naming each value that is still ``...``."""
    missing = [name for name, value in values.items() if _unanswered(value)]
    if not missing:
        return
    names = ", ".join(f"`{name}`" for name in missing)
    verb = "is" if len(missing) == 1 else "are"
    raise ExerciseError(
        f"{names} {verb} still `...`: replace the `...` in the cell above with your code "
        "(the comment there is the hint), run that cell, then run this check again"
    )


def check(condition: bool, hint: str) -> None:
    """Raise :class:`ExerciseError` with ``hint`` unless ``condition`` holds."""
    if not condition:
        raise ExerciseError(f"Not yet: {hint}")


def close(value: Any, expected: Any, tol: float, hint: str) -> None:
    """Raise :class:`ExerciseError` unless ``value`` is within ``tol`` of ``expected``."""
    if _unanswered(value):
        raise ExerciseError(
            "the value to check is still `...`: replace the `...` in the cell above with your"
            " code (the comment there is the hint), run that cell, then run this check again"
        )
    try:
        got, want = float(value), float(expected)
    except (TypeError, ValueError):
        raise ExerciseError(
            f"Not yet: expected a number, got {type(value).__name__} {value!r}. {hint}"
        ) from None
    if not (math.isfinite(got) and abs(got - want) <= tol):
        raise ExerciseError(
            f"Not yet: got {got:.6g}, which is not within {tol:g} of the answer. {hint}"
        )
