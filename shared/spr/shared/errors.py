"""Base of the project's user-facing exceptions.

Every error a user can cause (bad input, a missing model folder, an unreachable Redis) is a subclass
of :class:`SprError` with a message that names the field or setting and the fix. The CLI prints the
message on one line; the HTTP services map it to the error envelope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class SprError(Exception):
    """An error caused by input or configuration, with a message meant for the user."""


def validation_problems(exc: ValidationError) -> str:
    """``field.path: message`` for every error of ``exc``, joined with "; " (never the input values,
    which may be large or private)."""
    return "; ".join(_problems(exc, root="<root>"))


def first_validation_problem(exc: ValidationError, root: str = "<line>") -> str:
    """``field.path: message`` of the first error of ``exc`` (``root`` where the whole value is wrong),
    for one-line messages about one line of a file."""
    return _problems(exc, root)[0]


def _problems(exc: ValidationError, root: str) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in err['loc']) or root}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    ]
