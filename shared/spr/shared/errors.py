"""Base of the project's user-facing exceptions.

Every error a user can cause (bad input, a missing model folder, an unreachable Redis) is a subclass
of :class:`SprError` with a message that names the field or setting and the fix. The CLI prints the
message on one line; the HTTP services map it to the error envelope.
"""


class SprError(Exception):
    """An error caused by input or configuration, with a message meant for the user."""
