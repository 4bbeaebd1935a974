"""RFC 9457 problem details: the one place that builds every non-2xx body of the gateway.

Routes raise ``ApiError(slug, detail)``; the handlers registered by ``install_problem_handlers``
turn it, FastAPI's validation errors, Starlette's HTTP errors and anything unhandled into
``application/problem+json``. ``type`` is the relative URI ``/problems/<slug>``. Middleware and
the server protocol answer with ``problem_response``; a problem carried inside another body (a
refused file of a batch, the ``expired`` event that ends an event stream) is ``problem_document``.

=========================  ======  ================================================================
slug                       status  when
=========================  ======  ================================================================
``malformed-request``      400     the multipart body cannot be parsed
``image-too-large``        413     the body or the image is over ANIMEGAN_MAX_UPLOAD_BYTES
``video-too-large``        413     POST /videos: the clip is over ANIMEGAN_MAX_VIDEO_BYTES (refused while it streams)
``unsupported-video``      415     not MP4, MOV, WebM or MKV by its leading bytes, or video not H.264, H.265, VP9
                                   or AV1
``invalid-video``          422     empty, truncated, corrupt or undecodable clip, no video stream; a video job
                                   fails with it when a frame does not decode
``video-too-long``         422     the clip lasts over ANIMEGAN_MAX_VIDEO_SECONDS, or has more segments than the
                                   queue depth or the per-client quota could ever admit
``video-frames-too-large`` 422     the clip's frames have more pixels than 4096x2160
``unsupported-media-type`` 415     not JPEG/PNG/WebP/HEIC by magic bytes, or the body is not multipart
``validation-error``       422     a missing or invalid field, unknown style or format (+ ``errors``)
``invalid-image``          422     undecodable, truncated or empty image
``too-many-pixels``        422     the header declares more than ANIMEGAN_MAX_PIXELS (bomb)
``idempotency-key-reused`` 422     an Idempotency-Key seen before with a different request
``unauthorized``           401     a keys file is set and no valid ``Authorization: Bearer`` key was sent
``callback-url-refused``   422     callback_url not http(s), too long, private host, or webhooks off
``job-not-found``          404     unknown or expired job id
``batch-not-found``        404     unknown or expired batch id (or another client's)
``too-many-files``         422     POST /batches with more than ANIMEGAN_MAX_BATCH_FILES image parts
``batch-rejected``         422     POST /batches where no file is a usable image (+ ``jobs``: each problem)
``batch-not-ready``        409     results.zip asked for before any job of the batch succeeded (+ Retry-After)
``batch-no-results``       409     results.zip of a batch whose jobs all ended and none succeeded
``request-timeout``        408     the body did not arrive within ANIMEGAN_UPLOAD_TIMEOUT_S
``headers-too-large``      431     the request line and headers are over ANIMEGAN_MAX_HEADER_BYTES
``result-expired``         404     the job succeeded but its result has expired
``job-not-ready``          409     result asked for before the job succeeded (+ Retry-After)
``job-failed``             409     result asked for a failed job (the job's error is the detail)
``range-not-satisfiable``  416     a video result's Range starts past its end (+ Content-Range)
``idempotency-key-in-use`` 409     the first request with this key is still being accepted
``job-running``            409     DELETE of a job a worker is computing now (+ Retry-After)
``client-quota``           429     the client has ANIMEGAN_MAX_QUEUED_PER_CLIENT jobs queued or running
                                   (+ Retry-After)
``rate-limited``           429     the client is over ANIMEGAN_RATE_LIMIT (+ Retry-After)
``too-many-streams``       429     ANIMEGAN_MAX_EVENT_STREAMS(_PER_CLIENT) event streams open (+ Retry-After)
``queue-full``             503     backpressure: queue at ANIMEGAN_MAX_QUEUE_DEPTH (+ Retry-After)
``store-full``             503     Redis would pass its memory budget with one more job (+ Retry-After)
``too-many-uploads``       503     ANIMEGAN_MAX_CONCURRENT_UPLOADS bodies being received (+ Retry-After)
``broker-unavailable``     503     Redis or the broker cannot be reached (+ Retry-After)
``store-unavailable``      503     the object store (ANIMEGAN_S3_BUCKET) cannot be reached or failed (+ Retry-After)
``not-ready``              503     /readyz: Redis unreachable or no live worker
``client-closed-request``  499     the client closed the connection before its request body arrived
                                   (nobody reads this answer: it names the outcome in the request
                                   metrics, nginx's 499, so a dropped upload never counts as a 5xx)
``internal-error``         500     anything unhandled; the detail is generic, never the exception
``about:blank``            any     plain HTTP errors (unknown route 404, 405); title = reason phrase
=========================  ======  ================================================================
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "/problems/"
# A problem answer in the API document: ``responses={404: PROBLEM_RESPONSE}`` on a route.
PROBLEM_RESPONSE: dict[str, Any] = {"content": {PROBLEM_MEDIA_TYPE: {}}}

PROBLEMS: dict[str, tuple[int, str]] = {
    "malformed-request": (400, "Malformed request"),
    "image-too-large": (413, "Image too large"),
    "video-too-large": (413, "Video too large"),
    "unsupported-video": (415, "Unsupported video format"),
    "invalid-video": (422, "Invalid video"),
    "video-too-long": (422, "Video too long"),
    "video-frames-too-large": (422, "Video frames too large"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "validation-error": (422, "Validation error"),
    "invalid-image": (422, "Invalid image"),
    "too-many-pixels": (422, "Too many pixels"),
    "idempotency-key-reused": (422, "Idempotency key reused"),
    "unauthorized": (401, "Unauthorized"),
    "callback-url-refused": (422, "Callback URL refused"),
    "job-not-found": (404, "Job not found"),
    "batch-not-found": (404, "Batch not found"),
    "too-many-files": (422, "Too many files"),
    "batch-rejected": (422, "No usable image in the batch"),
    "batch-not-ready": (409, "Batch not ready"),
    "batch-no-results": (409, "No result in the batch"),
    "request-timeout": (408, "Request timeout"),
    "headers-too-large": (431, "Request header fields too large"),
    "result-expired": (404, "Result expired"),
    "job-not-ready": (409, "Job not ready"),
    "job-failed": (409, "Job failed"),
    "range-not-satisfiable": (416, "Range not satisfiable"),
    "idempotency-key-in-use": (409, "Idempotency key in use"),
    "job-running": (409, "Job running"),
    "client-quota": (429, "Too many jobs of this client"),
    "rate-limited": (429, "Rate limited"),
    "too-many-streams": (429, "Too many event streams"),
    "queue-full": (503, "Queue full"),
    "store-full": (503, "Store full"),
    "too-many-uploads": (503, "Too many uploads"),
    "broker-unavailable": (503, "Broker unavailable"),
    "not-ready": (503, "Not ready"),
    "store-unavailable": (503, "Object store unavailable"),
    "client-closed-request": (499, "Client closed request"),
    "internal-error": (500, "Internal error"),
}


class ApiError(Exception):
    """An error a route wants the client to see as a problem document."""

    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.slug = slug
        self.status, self.title = PROBLEMS[slug]
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}


def broker_unavailable(what: str) -> ApiError:
    """503 ``broker-unavailable``: Redis or the broker did not answer while ``what``."""
    return ApiError(
        "broker-unavailable", f"The job store is unreachable ({what}); try again shortly.", headers={"Retry-After": "5"}
    )


def store_unavailable(what: str) -> ApiError:
    """503 ``store-unavailable``: the object store did not answer (or failed) while ``what``."""
    return ApiError(
        "store-unavailable",
        f"The object store is unreachable ({what}); try again shortly.",
        headers={"Retry-After": "5"},
    )


def problem_body(
    *, slug: str | None, status: int, title: str, detail: str, instance: str, request_id: str | None
) -> dict[str, Any]:
    return {
        "type": TYPE_PREFIX + slug if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }


def problem_document(error: ApiError, *, instance: str | None = None) -> dict[str, Any]:
    """The problem's own members, for a problem carried inside another body (no request id, no extras)."""
    document: dict[str, Any] = {
        "type": TYPE_PREFIX + error.slug,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if instance is not None:
        document["instance"] = instance
    return document


def problem_response(
    error: ApiError, *, instance: str, request_id: str | None, extra_headers: dict[str, str] | None = None
) -> JSONResponse:
    body = problem_body(
        slug=error.slug,
        status=error.status,
        title=error.title,
        detail=error.detail,
        instance=instance,
        request_id=request_id,
    )
    body.update(error.extra)
    headers = {**error.headers, **(extra_headers or {})}
    return JSONResponse(body, status_code=error.status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem_response(exc, instance=request.url.path, request_id=_request_id(request))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else title
    body = problem_body(
        slug=None,
        status=exc.status_code,
        title=title,
        detail=detail,
        instance=request.url.path,
        request_id=_request_id(request),
    )
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers, media_type=PROBLEM_MEDIA_TYPE)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors) or "Invalid request."
    error = ApiError("validation-error", detail, extra={"errors": errors})
    return problem_response(error, instance=request.url.path, request_id=_request_id(request))


async def _on_unhandled(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    error = ApiError("internal-error", "The server hit an unexpected error; the request was not completed.")
    return problem_response(error, instance=request.url.path, request_id=_request_id(request))


async def _on_client_gone(request: Request, exc: Exception) -> JSONResponse:
    # Not an error of the service: no traceback, and 499 (not 500) in the request metrics.
    logger.info("the client closed the connection before its request body arrived")
    error = ApiError("client-closed-request", "The client closed the connection before the request body arrived.")
    return problem_response(error, instance=request.url.path, request_id=_request_id(request))


async def _on_dependency_down(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("dependency unavailable: %s", type(exc).__name__)
    error = ApiError(
        "broker-unavailable", "The job store is unreachable; try again shortly.", headers={"Retry-After": "5"}
    )
    return problem_response(error, instance=request.url.path, request_id=_request_id(request))


async def _on_store_down(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("object store unavailable: %s", exc)
    error = store_unavailable("while answering")
    return problem_response(error, instance=request.url.path, request_id=_request_id(request))


def install_problem_handlers(
    app: FastAPI,
    *,
    unavailable: tuple[type[Exception], ...] = (),
    store_unavailable: tuple[type[Exception], ...] = (),
) -> None:
    """Register the handlers; ``unavailable`` are exception types meaning Redis or the broker is down,
    ``store_unavailable`` those meaning the object store is."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(ClientDisconnect, _on_client_gone)
    for exc_type in unavailable:
        app.add_exception_handler(exc_type, _on_dependency_down)
    for exc_type in store_unavailable:
        app.add_exception_handler(exc_type, _on_store_down)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unhandled)
