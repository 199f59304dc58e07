"""Errors raised by the hub, grouped by what the operator does about them.

::

    HubError
    ├── ConfigError          a file or setting is wrong: fix it and run again
    ├── TransportError       a peer could not be reached or refused us
    │   ├── TransientTransportError   retried with backoff
    │   └── PermanentTransportError   parked for an operator; not retried
    ├── RejectedInput        the input broke a rule: quarantined, sender told
    ├── AccessDenied         the caller may not touch this country's documents
    └── ConflictError        the request clashes with the stored state

Every message says what failed, where (country, connector, path, document, line)
and what to do. Lower-level errors are translated at the boundary with
``raise ... from``.
"""

from __future__ import annotations


class HubError(Exception):
    """Root of every error the hub raises on purpose."""


class ConfigError(HubError, ValueError):
    """A configuration file or setting is invalid; fix it and run again."""


class TransportError(HubError):
    """A transport operation failed.

    Attributes:
        retriable: True when trying again later may succeed.
    """

    retriable: bool = False


class TransientTransportError(TransportError):
    """A temporary failure (timeout, dropped connection, 5xx, 429); retried."""

    retriable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentTransportError(TransportError):
    """A failure that will not go away by retrying (4xx, refused host key)."""

    retriable = False


class RejectedInput(HubError, ValueError):
    """Input that breaks a rule; it is quarantined and the sender told why."""


class InputFileError(HubError, ValueError):
    """A file named for ingest cannot be read (missing, not a regular file)."""


class PrepareProcessError(HubError, RuntimeError):
    """The prepare process of a bulk ingest failed or stopped before its end."""


class AccessDenied(HubError, PermissionError):
    """The caller's country may not submit or read this document."""


class ConflictError(HubError):
    """The request conflicts with what is stored (for example a wrong state)."""


__all__ = [
    "AccessDenied",
    "ConfigError",
    "ConflictError",
    "HubError",
    "InputFileError",
    "PermanentTransportError",
    "PrepareProcessError",
    "RejectedInput",
    "TransientTransportError",
    "TransportError",
]
