"""The one error type the editor answers as the client's fault: :class:`ClientError` (bad input,
an unknown session, a conflict) becomes ``{"error": message}`` with its status code; any other
exception is our bug and becomes a 500 with a logged traceback (:mod:`ssgan.serve.routes`)."""

from __future__ import annotations


class ClientError(Exception):
    """A request the editor cannot do as sent; ``str(error)`` is one line for the page, ``status``
    the HTTP status it is answered with (400 bad input, 404 unknown, 409 conflict, 413 too large,
    415 not an image)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
