"""The scorer's user-facing errors: each knows its HTTP status, error code and the input field at fault.

The HTTP layer turns them into the error envelope (:class:`spr.shared.scoring_api.ErrorResponse`); the
queue worker turns input errors into permanent failures (dead letters).
"""

from __future__ import annotations

from spr.shared.errors import SprError


class ScorerError(SprError):
    """Base: an error with an HTTP status and a stable code."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InputError(ScorerError):
    """The request (or queued group) is invalid: ``field`` names the dotted input path at fault."""

    status_code = 422
    code = "invalid_request"


class SemanticModelNotConfiguredError(InputError):
    """lambda > 0 asks for S_sem, but the service runs without a semantic model."""

    def __init__(self, field: str = "options.lambda") -> None:
        super().__init__(
            "a semantic model is not configured on this scorer (SPR_SCORER_SEMANTIC_MODEL=none), so "
            "lambda must be 0 (localization only); or start the scorer with SPR_SCORER_SEMANTIC_MODEL "
            "set to a local CLIP folder",
            field=field,
        )


class ModelLoadError(ScorerError):
    """A configured model folder cannot be loaded; names the setting."""

    status_code = 503
    code = "not_ready"
