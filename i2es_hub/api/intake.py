"""Request bodies in: size limits, content types, spooling of large batches.

Bodies are read as a stream and refused with 413 as soon as they pass the limit,
so an oversized upload never fills memory. The bytes then go through the same
safe XML intake as every other channel (:mod:`i2es_hub.xmlsafe`, inside the
pipeline): no DOCTYPE, no entities, no network.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from i2es_hub import xmlsafe
from i2es_hub.api.errors import ApiError

MAX_BATCH_BYTES = int(os.environ.get("I2ES_HUB_API_MAX_BATCH_BYTES", 256 * 1024 * 1024))
"""Largest batch accepted by ``POST /v1/batches``, in bytes."""

XML_TYPES = ("application/xml", "text/xml", "application/octet-stream")

XML_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/xml": {
                "schema": {
                    "type": "string",
                    "description": "A document in the canonical schema "
                    "(urn:i2es-hub:canonical:1), UTF-8 XML without a DOCTYPE.",
                }
            }
        },
    }
}
"""OpenAPI fragment for routes that take canonical XML as the body."""


@dataclass(slots=True)
class Body:
    """A request body, in memory or (when large) in a temporary file.

    Attributes:
        data: The bytes, when they fit in memory.
        path: The temporary file holding them otherwise; the caller removes it.
        size: Length in bytes.
        digest: SHA-256 hex digest of the bytes.
    """

    data: bytes | None = None
    path: Path | None = None
    size: int = 0
    digest: str = ""
    _chunks: list[bytes] = field(default_factory=list)

    def discard(self) -> None:
        """Remove the temporary file, if any."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def _check_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media not in XML_TYPES and not media.endswith("+xml"):
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"the body is {media}; this endpoint takes canonical XML",
            "send the document as application/xml (UTF-8, canonical schema "
            "urn:i2es-hub:canonical:1)",
        )


def _too_large(size: int | str, limit: int) -> ApiError:
    return ApiError(
        413,
        "BODY_TOO_LARGE",
        f"the body is {size} bytes, over this endpoint's limit of {limit} bytes",
        "split the documents over several requests (POST /v1/batches takes up to "
        f"{MAX_BATCH_BYTES} bytes)",
    )


async def read_body(
    request: Request, limit: int, spool_over: int | None = None
) -> Body:
    """Read the body, refusing it once it passes ``limit`` bytes.

    Args:
        request: The incoming request.
        limit: Largest body accepted.
        spool_over: Keep bodies up to this size in memory and write larger ones
            to a temporary file (``Body.path``); None keeps everything in memory.

    Raises:
        ApiError: 415 for a body that is not XML, 413 when it is too large, 400
            when it is empty.
    """
    _check_type(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(declared, limit)

    body = Body()
    sha = hashlib.sha256()
    spool = None
    try:
        async for chunk in request.stream():
            body.size += len(chunk)
            if body.size > limit:
                raise _too_large(f"more than {limit}", limit)
            sha.update(chunk)
            if spool is None and spool_over is not None and body.size > spool_over:
                spool = tempfile.NamedTemporaryFile(  # noqa: SIM115 closed below
                    prefix="i2es-batch-", suffix=".xml", delete=False
                )
                body.path = Path(spool.name)
                spool.write(b"".join(body._chunks))
                body._chunks.clear()
            if spool is not None:
                spool.write(chunk)
            else:
                body._chunks.append(chunk)
    except BaseException:
        if spool is not None:
            spool.close()
        body.discard()
        raise
    if spool is not None:
        spool.close()
    else:
        body.data = b"".join(body._chunks)
        body._chunks.clear()

    body.digest = sha.hexdigest()
    if body.size == 0:
        raise ApiError(
            400,
            "EMPTY_BODY",
            "the request has no body",
            "send the canonical XML document as the request body",
        )
    return body


def document_limit() -> int:
    """Largest single document accepted (the pipeline's in-memory limit)."""
    return xmlsafe.MAX_DOCUMENT_BYTES
