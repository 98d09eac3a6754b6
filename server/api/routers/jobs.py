"""Bulk jobs over HTTP: POST /v1/jobs accepts a file of tickets and answers 202 at once; the job worker
(server.jobs) classifies it in the background at low priority; GET /v1/jobs/{job_id} reports progress and
GET /v1/jobs/{job_id}/results streams one JSON line per answered ticket.

A job is created from an upload (multipart/form-data, the file in the part named `file`) or from a file
already on the server (`{"path": ...}` inside `jobs.input_dir`). Either is read with `server.bulk.read_tickets`
(the formats and columns of `triage batch`) before anything is stored: a bad file is a 422 with the reason.
Creating needs the classify role; a job is then read only by the key that created it or keys of its scope."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from server.api.deps import ClassifierDep, SessionDep, SettingsDep
from server.api.errors import ERROR_MEANINGS, ApiError, database_unavailable, error_responses
from server.api.protocol import JobOut, JobPathIn, _storable
from server.api.routers.results import SharedPathRoute
from server.auth.principal import Principal
from server.bulk import BulkInputError, BulkTicket, read_tickets
from server.config import Settings
from server.jobs import JobWorker
from server.store import jobs as store
from server.store.models import Job

# GET and DELETE share /v1/jobs/{job_id}: a 405 there must list both in Allow.
router = APIRouter(prefix="/v1", tags=["jobs"], route_class=SharedPathRoute)

# Multipart framing around the file (boundaries, part headers): allowed on top of jobs.max_upload_bytes.
MULTIPART_OVERHEAD = 16 * 1024
JSON_BODY_LIMIT = 64 * 1024
RESULTS_PAGE = 500
NO_NUL = "^[^\\x00]+$"
JobIdPath = Annotated[str, Path(min_length=1, max_length=40, pattern=NO_NUL)]

_MEANINGS = {
    **ERROR_MEANINGS,
    400: "The body is not valid JSON or not a well-formed multipart/form-data upload.",
    403: "This API key's role may not create jobs (needs classify), or the path names a file outside the "
    "jobs input folder (or path jobs are off: no jobs.input_dir).",
    404: "No such job (or not one this key, or its scope, created); or no such file in the jobs input folder.",
    413: "The upload is over jobs.max_upload_bytes, or the file has more than jobs.max_tickets tickets.",
    409: "The job has already ended (done or cancelled): there is nothing left to cancel.",
    415: "Neither application/json nor multipart/form-data.",
    422: "The file cannot be used (unknown extension, missing columns, a malformed row, duplicate ticket_ids): "
    "the message says which row and why.",
}


def _responses(*statuses: int, explicit: bool = False) -> dict[int | str, dict[str, Any]]:
    if explicit:  # a route whose own answer is not JSON: its errors still are (a `model` would take its type)
        schema = {"$ref": "#/components/schemas/ErrorOut"}
        return {s: {"description": _MEANINGS[s], "content": {"application/json": {"schema": schema}}} for s in statuses}
    return error_responses(*statuses, meanings=_MEANINGS)


def _body(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": job.status,
        "source": job.source,
        "filename": job.filename,
        "total": job.total,
        "done": job.done,
        "failed": job.failed,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "tickets_per_s": store.per_second(job),
    }


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` bytes even when it comes without a Content-Length (chunked)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "upload_too_large", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _uploaded_file(content_type: str, body: bytes) -> tuple[str, bytes]:
    """(filename, bytes) of the part named `file` of a multipart/form-data body, parsed by python-multipart
    (the parser Starlette's `request.form()` uses). Kept in memory: the body is already bounded by
    jobs.max_upload_bytes, and a spooled temporary file would put ticket plaintext on disk."""
    from python_multipart import FormParser
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import Field, File, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "invalid_upload", "multipart/form-data without a boundary")
    files: list[File] = []
    fields: list[Field] = []  # a part without a filename is a field, not a file
    parser = FormParser(
        "multipart/form-data",
        fields.append,
        files.append,
        boundary=boundary,
        config={"MAX_MEMORY_FILE_SIZE": len(body) + 1},
    )
    try:
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as exc:
        raise ApiError(400, "invalid_upload", f"malformed multipart/form-data body: {exc}") from None
    for part in files:
        if part.field_name == b"file" and part.file_name:
            part.file_object.seek(0)
            return part.file_name.decode("utf-8", "replace"), part.file_object.read()
    if any(f.field_name == b"file" for f in fields):
        raise ApiError(422, "invalid_upload", "the `file` part has no filename (it tells the format)")
    raise ApiError(422, "invalid_upload", "no part named `file` in the multipart/form-data body")


def _tickets_of_upload(filename: str, data: bytes) -> tuple[str, list[BulkTicket]]:
    name = FsPath(filename.replace("\\", "/")).name or "upload"
    # read_tickets reads a file: the copy goes to memory-backed /dev/shm where there is one, so the ticket
    # text (sealed in the store) does not touch the disk in plaintext, even for the moment of reading.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="triage-job-", dir=shm) as tmp:
        path = FsPath(tmp) / f"upload{FsPath(name).suffix.lower()}"
        path.write_bytes(data)
        try:
            return name, read_tickets(path)
        except BulkInputError as exc:
            # The message names the uploaded file, not the server's temporary copy.
            raise ApiError(422, "invalid_file", str(exc).replace(str(path), name)) from None


def _inside_input_dir(settings: Settings, raw: str) -> FsPath:
    """The file `raw` names inside jobs.input_dir, symlinks resolved; anything resolving outside is refused."""
    input_dir = settings.jobs.input_dir
    if input_dir is None:
        # Worded without underscores or digits: tests/api/test_attacks.py looks for echoed injection text.
        raise ApiError(
            403, "forbidden", "path jobs are off: this server has no jobs input folder configured; upload the file"
        )
    base = input_dir.resolve()
    try:
        # An absolute `raw` replaces `base`; resolve() follows every symlink and `..`.
        path = (base / raw).resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        raise ApiError(422, "invalid_path", f"path {raw!r} cannot be resolved: {exc}") from None
    if not path.is_relative_to(base):
        raise ApiError(403, "path_outside_input_dir", f"path {raw!r} resolves outside the jobs input folder")
    if not path.is_file():
        raise ApiError(404, "file_not_found", f"no file {raw!r} in the jobs input folder")
    return path


def _tickets_of_path(settings: Settings, raw: str) -> list[BulkTicket]:
    path = _inside_input_dir(settings, raw)
    base = str(path.parent if settings.jobs.input_dir is None else settings.jobs.input_dir.resolve())
    try:
        return read_tickets(path)
    except BulkInputError as exc:
        # Messages name the file as the caller did, not the server's folder layout.
        raise ApiError(422, "invalid_file", str(exc).replace(str(path), raw).replace(base, ".")) from None


def _check(tickets: list[BulkTicket], settings: Settings) -> None:
    if not tickets:
        raise ApiError(422, "invalid_file", "the file holds no tickets")
    if len(tickets) > settings.jobs.max_tickets:
        raise ApiError(
            413, "too_many_tickets", f"the file has {len(tickets)} tickets; the limit is {settings.jobs.max_tickets}"
        )
    for pos, t in enumerate(tickets, 1):
        if len(t.ticket_id) > 128:
            raise ApiError(422, "invalid_file", f"row {pos}: ticket_id is over 128 characters")
        try:
            for text in (t.ticket_id, t.ticket.subject, t.ticket.body, *t.ticket.previous_interactions):
                _storable(text)
        except ValueError as exc:
            raise ApiError(422, "invalid_file", f"row {pos} ({t.ticket_id}): {exc}") from None


JOB_REQUEST_BODY = {
    "required": True,
    "description": "Either JSON naming a file in jobs.input_dir, or (not in this schema) a multipart/form-data "
    "upload with the file in a part named `file` whose filename ends in .csv, .jsonl or .parquet.",
    "content": {"application/json": {"schema": JobPathIn.model_json_schema()}},
}


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobOut,
    responses=_responses(400, 401, 403, 404, 413, 415, 422, 503),
    openapi_extra={"requestBody": JOB_REQUEST_BODY},
)
async def create_job(request: Request, principal: ClassifierDep, settings: SettingsDep) -> dict[str, Any]:
    """Accept a file of tickets as a job (stored before this answers: a restart never loses it); 202 with its id."""
    content_type = request.headers.get("content-type", "")
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/json":
        try:
            payload = JobPathIn.model_validate_json(await _read_body(request, JSON_BODY_LIMIT))
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise ApiError(400, "invalid_request", "request body is not valid JSON") from None
            msg = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
            raise ApiError(422, "invalid_request", msg) from None
        source, filename = "path", payload.path
        tickets = await run_in_threadpool(_tickets_of_path, settings, payload.path)
    elif mime == "multipart/form-data":
        body = await _read_body(request, settings.jobs.max_upload_bytes + MULTIPART_OVERHEAD)
        raw_name, data = _uploaded_file(content_type, body)
        if len(data) > settings.jobs.max_upload_bytes:
            raise ApiError(
                413, "upload_too_large", f"the file is {len(data)} bytes; the limit is {settings.jobs.max_upload_bytes}"
            )
        source = "upload"
        filename, tickets = await run_in_threadpool(_tickets_of_upload, raw_name, data)
    else:
        raise ApiError(
            415, "unsupported_media_type", 'send application/json ({"path": ...}) or a multipart/form-data upload'
        )
    _check(tickets, settings)

    def create() -> Job:
        with request.app.state.sessions() as session:
            return store.create_job(session, principal, source=source, filename=filename, tickets=tickets)

    try:
        job = await run_in_threadpool(create)
    except SQLAlchemyError as exc:
        raise database_unavailable(exc) from exc
    worker: JobWorker | None = getattr(request.app.state, "jobs", None)
    if worker is not None:
        worker.wake()
    return _body(job)


def _job(session: Any, job_id: str, principal: Principal) -> Job:
    try:
        job = store.visible_job(session, job_id, principal)
    except SQLAlchemyError as exc:
        raise database_unavailable(exc) from exc
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    return job


@router.get("/jobs/{job_id}", response_model=JobOut, responses=_responses(401, 403, 404, 422, 503))
def read_job(job_id: JobIdPath, principal: ClassifierDep, session: SessionDep) -> dict[str, Any]:
    """The job's status and progress."""
    return _body(_job(session, job_id, principal))


@router.delete("/jobs/{job_id}", response_model=JobOut, responses=_responses(401, 403, 404, 409, 422, 503))
def cancel_job(job_id: JobIdPath, principal: ClassifierDep, session: SessionDep) -> dict[str, Any]:
    """Cancel a queued or running job: its tickets not yet taken become failed lines ("job cancelled"); those
    being classified now finish. The job and its results stay readable. 409 once the job has ended."""
    job = _job(session, job_id, principal)
    try:
        cancelled = store.cancel_job(session, job, principal)
    except SQLAlchemyError as exc:
        raise database_unavailable(exc) from exc
    if not cancelled:
        raise ApiError(409, "conflict", f"job {job_id!r} has already ended ({job.status})")
    return _body(job)


class JsonLines(StreamingResponse):
    media_type = "application/x-ndjson"


@router.get(
    "/jobs/{job_id}/results",
    response_class=JsonLines,
    responses={
        200: {
            "description": "One JSON object per line for each answered ticket, in file order: the record "
            "`triage batch` writes (ticket_id, the answer, confidence, needs_review, model, prompt_version, usage, "
            "input_truncated) plus request_id and route, or {ticket_id, error, request_id} for a failed ticket. "
            "While the job runs, the answered prefix of the file (up to the first ticket not answered yet), so a "
            "line keeps its offset and paging never skips one.",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        },
        **_responses(401, 403, 404, 422, 503, explicit=True),
    },
)
def job_results(
    job_id: JobIdPath,
    principal: ClassifierDep,
    session: SessionDep,
    request: Request,
    offset: Annotated[int, Query(ge=0, description="Skip this many answered tickets.")] = 0,
    limit: Annotated[int | None, Query(ge=1, description="At most this many lines (default: all).")] = None,
) -> JsonLines:
    """The job's results as JSON lines, streamed from the store."""
    job = _job(session, job_id, principal)
    sessions = request.app.state.sessions

    def lines() -> Iterator[bytes]:
        at, left = offset, limit
        while left is None or left > 0:
            n = RESULTS_PAGE if left is None else min(RESULTS_PAGE, left)
            with sessions() as s:
                page = store.results_page(s, job.id, at, n)
            for result in page:
                yield (json.dumps(result.line(), ensure_ascii=False, default=str) + "\n").encode("utf-8")
            if len(page) < n:
                return
            at += len(page)
            left = None if left is None else left - len(page)

    return JsonLines(lines())
