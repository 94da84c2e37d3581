"""One table between EdgeFleet errors and gRPC status codes, for servers and clients alike."""

from __future__ import annotations

import grpc

from edgefleet.errors import (
    AlreadyExists,
    DeadlineExceeded,
    EdgeFleetError,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    VerificationError,
)

# First match wins when a server maps an error to a code; a client maps a code back to the
# first error listed for it.
ERROR_STATUS: tuple[tuple[type[EdgeFleetError], grpc.StatusCode], ...] = (
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (VerificationError, grpc.StatusCode.FAILED_PRECONDITION),
)


def status_for(error: EdgeFleetError) -> grpc.StatusCode:
    """The status code a server answers with for a domain error (INTERNAL if unmapped)."""
    for kind, code in ERROR_STATUS:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def error_for(code: grpc.StatusCode) -> type[EdgeFleetError]:
    """The domain error a client raises for a status code (EdgeFleetError if unmapped)."""
    for kind, mapped in ERROR_STATUS:
        if mapped == code:
            return kind
    return EdgeFleetError
