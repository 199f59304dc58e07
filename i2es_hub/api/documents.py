"""Routes for documents: upload, batch upload, validate, read, delivery status.

Uploads go through the same :class:`~i2es_hub.ingest.Pipeline` as every other
channel, with the caller's country as the sender. The answer is sent only after
the pipeline has committed the document and its deliveries.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, Header, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import select
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from i2es_hub import outbox, store
from i2es_hub.api import idempotency
from i2es_hub.api.auth import Caller, CallerDep
from i2es_hub.api.errors import ApiError
from i2es_hub.api.intake import MAX_BATCH_BYTES, XML_BODY, Body, read_body
from i2es_hub.api.intake import document_limit as _document_limit
from i2es_hub.findings import Code, Finding

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["documents"])

# Ids the hub hands out are hex; anything else (NUL bytes included, which
# PostgreSQL refuses in text) is answered 422 before it reaches the database.
ID_PATTERN = r"^[0-9A-Za-z_-]+$"
IdParam = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="The document id, or the message id an upload answered with.",
    ),
]
NDJSON = "application/x-ndjson"
T = TypeVar("T")


# ----- answers ----------------------------------------------------------------------


def utc(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite hands timestamps back without a zone)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


def _status_of(result: dict[str, Any]) -> int:
    if result["outcome"] != "rejected":
        return 202
    codes = {f["code"] for f in result["findings"]}
    return 403 if Code.SENDER_NOT_ISSUER in codes else 422


def _with_links(result: dict[str, Any], document_id: str | None) -> dict[str, Any]:
    if document_id:
        result["document_id"] = document_id
        result["links"] = {
            "document": f"/v1/documents/{document_id}",
            "status": f"/v1/documents/{document_id}/status",
        }
    return result


def _answer(result: dict[str, Any], caller: Caller) -> JSONResponse:
    """202 with the result, or the error that explains a rejection."""
    status = _status_of(result)
    if status == 202:
        return JSONResponse(result, status_code=202)
    doc = result["document"]
    label = (
        f"{doc['type']} {doc['issuer']}/{doc['number']}"
        if doc.get("type")
        else "the document"
    )
    quarantined = f"quarantined as {result.get('quarantine_id')}"
    if status == 403:
        raise ApiError(
            403,
            "FORBIDDEN",
            f"{label} is issued by {doc['issuer']}; {caller.country} may submit only "
            f"documents it issues ({quarantined})",
            f"send it with {doc['issuer']}'s token from {doc['issuer']}'s system, or "
            f"correct IssuingCountry if {caller.country} issued it",
            result=result,
        )
    errors = [f for f in result["findings"] if f["severity"] == "error"]
    raise ApiError(
        422,
        "REJECTED",
        f"{label} was rejected with {len(errors)} error(s): "
        + "; ".join(f"{f['code']}: {f['message']}" for f in errors[:5]),
        f"correct the findings and send the document again ({quarantined})",
        result=result,
    )


# ----- upload -----------------------------------------------------------------------


ALERTING = {
    Code.SHORTFALL,
    Code.EXCESS_RECEIPT,
    Code.EXCESS_ESTIMATE,
    Code.EXCESS_ASSESSMENT,
}


def _push_alerts(
    request: Request, tasks: BackgroundTasks, results: Iterable[dict[str, Any]]
) -> None:
    """After the answer, push to alerted countries that have a connector."""
    countries: set[str] = set()
    for result in results:
        if any(f["code"] in ALERTING for f in result.get("findings", [])):
            countries.update(result.get("deliveries", []))
    if countries:
        from i2es_hub.exchange import push_now

        tasks.add_task(push_now, countries, request.app.state.engine)


def _ingest_one(
    request: Request, caller: Caller, body: Body, source: str
) -> dict[str, Any]:
    from i2es_hub.ingest import Submission

    hub = request.app.state.hub
    assert body.data is not None
    submission = Submission(body.data, caller.country, "api", source)
    candidates = list(hub.pipeline.prepare(submission))
    with hub.write_lock:
        results = list(hub.pipeline.commit_all(candidates))
    if len(results) != 1:
        raise ApiError(
            422,
            "NOT_ONE_DOCUMENT",
            f"the body holds {len(results)} documents; this endpoint takes one",
            "send batches to POST /v1/batches",
        )
    result = results[0]
    log.info(
        "api upload from %s: %s %s %s/%s",
        caller.country,
        result.outcome,
        result.doc_type or "-",
        result.issuer or "-",
        result.number or "-",
    )
    return _with_links(result.to_json(), result.document_id)


def _idempotent(
    request: Request, caller: Caller, body: Body, key: str
) -> dict[str, Any]:
    engine = request.app.state.engine
    with store.read_transaction(engine) as conn:
        previous = idempotency.find(conn, caller.country, key)
    if previous is None:
        return _ingest_one(
            request, caller, body, idempotency.source_for(key, body.digest)
        )
    if previous.digest != body.digest:
        raise ApiError(
            409,
            "IDEMPOTENCY_KEY_REUSED",
            f"Idempotency-Key {key!r} was used by {caller.country} for a different "
            "body",
            "use a new Idempotency-Key for a new document; repeat a key only to "
            "retry the very same body",
        )
    log.info("api upload from %s: replayed Idempotency-Key answer", caller.country)
    return _with_links(previous.result, previous.result.get("document_id"))


@router.post(
    "/documents",
    status_code=202,
    summary="Submit one document",
    openapi_extra=XML_BODY,
    responses={403: {"description": "Not issued by the caller's country"}},
)
async def post_document(
    request: Request,
    caller: CallerDep,
    tasks: BackgroundTasks,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=idempotency.KEY.pattern,
            description="Repeat the key to retry safely: the first answer comes "
            "back and nothing happens twice.",
        ),
    ] = None,
) -> JSONResponse:
    """Validate, check, store and route one canonical XML document.

    Answers 202 with the hub's message id, the outcome (accepted, held, amended,
    duplicate) and the findings, once the document and its deliveries are stored.
    A rejected document is quarantined and answered 422 (403 when the caller's
    country did not issue it), with the findings.
    """
    body = await read_body(request, _document_limit())
    if idempotency_key:
        result = await run_in_threadpool(
            _idempotent, request, caller, body, idempotency_key
        )
    else:
        source = f"api request {store.new_id()}"
        result = await run_in_threadpool(_ingest_one, request, caller, body, source)
    _push_alerts(request, tasks, [result])
    return _answer(result, caller)


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _batch_results(request: Request, caller: Caller, body: Body) -> Iterator[str]:
    """NDJSON lines, one per document, each after its database batch committed."""
    from i2es_hub.ingest import Submission

    hub = request.app.state.hub
    pipeline = hub.pipeline
    source = f"api batch {store.new_id()}"
    counts: dict[str, int] = {}
    try:
        if body.path is not None:
            candidates = pipeline.prepare_path(body.path, caller.country, "api", source)
        else:
            assert body.data is not None
            submission = Submission(body.data, caller.country, "api", source)
            candidates = pipeline.prepare(submission)
        for chunk in _chunks(candidates, pipeline.batch_size):
            # The write lock is held for one commit, never while a line is sent.
            with hub.write_lock:
                results = list(pipeline.commit_all(chunk))
            for result in results:
                counts[result.outcome] = counts.get(result.outcome, 0) + 1
                out = _with_links(result.to_json(), result.document_id)
                out["status"] = _status_of(out)
                yield json.dumps(out, default=str) + "\n"
    finally:
        body.discard()
        log.info(
            "api batch from %s: %s",
            caller.country,
            ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing",
        )


@router.post(
    "/batches",
    summary="Submit many documents in one canonical Batch",
    openapi_extra=XML_BODY,
    responses={
        200: {
            "description": "One result per document, in input order; each carries "
            "the status the single upload would have answered (202, 403 or 422).",
            "content": {NDJSON: {}, "application/json": {}},
        }
    },
)
async def post_batch(
    request: Request, caller: CallerDep, tasks: BackgroundTasks
) -> Any:
    """Ingest a ``<Batch>`` of documents, with a result per document.

    Ask for ``Accept: application/x-ndjson`` to have results streamed as each
    database batch commits (the way to send hundreds of thousands of documents);
    otherwise the answer is one JSON list once all are stored.
    """
    body = await read_body(request, MAX_BATCH_BYTES, spool_over=_document_limit())
    alerting: list[dict[str, Any]] = []

    def lines() -> Iterator[str]:
        for line in _batch_results(request, caller, body):
            result = json.loads(line)
            if any(f["code"] in ALERTING for f in result.get("findings", [])):
                alerting.append(result)
            yield line

    # The push reads ``alerting`` once the whole answer has been sent.
    tasks.add_task(_push_after, request, alerting)
    if NDJSON in request.headers.get("accept", ""):
        return StreamingResponse(lines(), media_type=NDJSON, background=tasks)
    collected = await run_in_threadpool(list, lines())
    return JSONResponse([json.loads(line) for line in collected], background=tasks)


def _push_after(request: Request, results: list[dict[str, Any]]) -> None:
    countries = {c for r in results for c in r.get("deliveries", [])}
    if countries:
        from i2es_hub.exchange import push_now

        push_now(countries, request.app.state.engine)


# ----- validate ---------------------------------------------------------------------


def _validate(request: Request, caller: Caller, body: Body) -> dict[str, Any]:
    from i2es_hub.ingest import Submission

    pipeline = request.app.state.hub.pipeline
    assert body.data is not None
    documents = []
    for cand in pipeline.prepare(
        Submission(body.data, caller.country, "api-validate", "validate")
    ):
        findings = list(cand.findings)
        doc = cand.doc
        if doc is not None and doc.issuer != caller.country:
            findings.append(
                Finding.of(
                    Code.SENDER_NOT_ISSUER,
                    f"{doc.label}: issued by {doc.issuer}; {caller.country} may "
                    "submit only its own documents",
                )
            )
        hint = cand.identity or cand.identity_hint
        documents.append(
            {
                "document": {
                    "type": doc.doc_type.value if doc else None,
                    "number": doc.number if doc else (hint[2] if hint else None),
                    "issuer": doc.issuer if doc else (hint[0] if hint else None),
                },
                "valid": not any(f.severity == "error" for f in findings),
                "findings": [
                    {
                        "code": f.code,
                        "severity": f.severity,
                        "line": f.line,
                        "message": f.message,
                    }
                    for f in findings
                ],
            }
        )
    return {"valid": all(d["valid"] for d in documents), "documents": documents}


@router.post(
    "/validate",
    summary="Check documents without submitting them",
    openapi_extra=XML_BODY,
)
async def post_validate(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Run the schema and document rules on a document or Batch; store nothing.

    Checks that need stored documents (the quoted import authorization, duplicates)
    and the estimate balance run only on submission.
    """
    body = await read_body(request, _document_limit())
    return await run_in_threadpool(_validate, request, caller, body)


# ----- read -------------------------------------------------------------------------


def _resolve(conn: Connection, ref: str) -> dict[str, Any] | None:
    """A document row by document id or by the message id of one of its versions."""
    doc = outbox.find_document(conn, ref)
    if doc is None:
        v = store.document_versions
        doc_id = conn.execute(
            select(v.c.document_id).where(v.c.message_id == ref)
        ).scalar()
        doc = outbox.find_document(conn, doc_id) if doc_id else None
    return doc


def _delivered_versions(conn: Connection, doc_id: str, country: str) -> list[int]:
    dl = store.deliveries
    rows = conn.execute(
        select(dl.c.version).where(
            dl.c.document_id == doc_id,
            dl.c.recipient == country,
            dl.c.kind == "document",
        )
    ).scalars()
    return sorted({v for v in rows if v is not None})


def _readable(conn: Connection, ref: str, caller: Caller) -> tuple[dict[str, Any], int]:
    """The document and the newest version the caller may read.

    Raises:
        ApiError: 404 when unknown, 403 when neither issued by nor addressed to
            the caller's country.
    """
    doc = _resolve(conn, ref)
    if doc is None:
        raise ApiError(
            404,
            "NOT_FOUND",
            f"no document with id or message id {ref!r}",
            "use the document_id or message_id an upload answered with, or a "
            "document id from your inbox",
        )
    if doc["issuer"] == caller.country:
        return doc, doc["version"]
    versions = _delivered_versions(conn, doc["id"], caller.country)
    if not versions:
        raise ApiError(
            403,
            "FORBIDDEN",
            f"document {doc['id']} is neither issued by nor addressed to "
            f"{caller.country}",
            "read only documents your country issued or received in its inbox",
        )
    return doc, versions[-1]


def _document_view(conn: Connection, ref: str, caller: Caller) -> dict[str, Any]:
    doc, version = _readable(conn, ref, caller)
    v = store.document_versions
    query = select(
        v.c.version, v.c.message_id, v.c.outcome, v.c.findings, v.c.received_at
    ).where(v.c.document_id == doc["id"])
    if doc["issuer"] != caller.country:
        query = query.where(v.c.version <= version)
    rows = conn.execute(query.order_by(v.c.version)).all()
    stored = conn.execute(
        select(v.c.canonical, v.c.original).where(
            v.c.document_id == doc["id"], v.c.version == version
        )
    ).one()
    canonical = stored.canonical or stored.original
    return {
        "id": doc["id"],
        "type": doc["doc_type"],
        "issuer": doc["issuer"],
        "number": doc["number"],
        "state": doc["state"],
        "version": version,
        "issue_date": str(doc["issue_date"]),
        "validity_from": str(doc["validity_from"]) if doc["validity_from"] else None,
        "validity_until": (
            str(doc["validity_until"]) if doc["validity_until"] else None
        ),
        "importer_country": doc["importer_country"],
        "exporter_country": doc["exporter_country"],
        "reference": (
            {
                "type": doc["ref_type"],
                "issuer": doc["ref_country"],
                "number": doc["ref_number"],
            }
            if doc["ref_type"]
            else None
        ),
        "versions": [
            {
                "version": r.version,
                "message_id": r.message_id,
                "outcome": r.outcome,
                "received_at": utc(r.received_at),
                "findings": r.findings,
            }
            for r in rows
        ],
        "xml": bytes(canonical).decode("utf-8"),
    }


@router.get("/documents/{id}", summary="Read a document")
def get_document(id: IdParam, request: Request, caller: CallerDep) -> dict[str, Any]:
    """A document your country issued or received, with its versions and XML.

    A recipient sees the versions delivered to it, not held or later ones.
    """
    with store.read_transaction(request.app.state.engine) as conn:
        return _document_view(conn, id, caller)


@router.get(
    "/documents/{id}/status", summary="Delivery state per recipient of a document"
)
def get_status(id: IdParam, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Where a document stands: its state, and each delivery's state per recipient.

    The issuer sees every delivery (the document's and its alerts'); a recipient
    sees the deliveries addressed to it.
    """
    with store.read_transaction(request.app.state.engine) as conn:
        doc, _ = _readable(conn, id, caller)
        info = outbox.document_status(conn, doc["id"])
    assert info is not None
    deliveries = [
        {
            "id": d["id"],
            "recipient": d["recipient"],
            "kind": d["kind"],
            "version": d["version"],
            "alert_id": d["alert_id"],
            "state": d["state"],
            "attempts": d["attempts"],
            "next_attempt_at": utc(d["next_attempt_at"]),
            "last_error": d["last_error"],
            "delivered_at": utc(d["delivered_at"]),
            "acknowledged_at": utc(d["acknowledged_at"]),
        }
        for d in info["deliveries"]
        if doc["issuer"] == caller.country or d["recipient"] == caller.country
    ]
    return {
        "document": {
            "id": doc["id"],
            "type": doc["doc_type"],
            "issuer": doc["issuer"],
            "number": doc["number"],
            "state": doc["state"],
            "version": doc["version"],
        },
        "deliveries": deliveries,
    }
