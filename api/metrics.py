"""Gateway metric families and the small functions the rest of the gateway records through.

The gateway counts what it sees: HTTP requests (``api.ops.http_metrics`` times them), accepted
uploads and their size, rejections by reason, deduplicated requests, open event streams. Its own
RSS and disk IO (``telemetry``) are refreshed at every scrape and every ``SAMPLE_INTERVAL_S``.
What Redis knows is read at scrape time, and the exposition served, by ``api.ops.scrape``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from prometheus_client import Counter, Gauge, Histogram

from telemetry.process_stats import ProcessStats

# Problem slugs that refuse an upload, and the bounded reason label each is counted under.
REJECTION_REASONS = {
    "image-too-large": "too_large",
    "video-too-large": "too_large",
    "unsupported-video": "unsupported",
    "invalid-video": "invalid",
    "video-too-long": "video_too_long",
    "video-frames-too-large": "too_many_pixels",
    "unsupported-media-type": "unsupported",
    "invalid-image": "invalid",
    "too-many-pixels": "too_many_pixels",
    "malformed-request": "malformed",
    "validation-error": "malformed",
    "request-timeout": "timeout",
    "headers-too-large": "headers_too_large",
    "too-many-uploads": "too_many_uploads",
    "queue-full": "queue_full",
    "client-quota": "client_quota",
    "too-many-streams": "too_many_streams",
    "callback-url-refused": "callback_refused",
    "broker-unavailable": "broker_unavailable",
    "unauthorized": "unauthorized",
    "rate-limited": "rate_limited",
}
UPLOAD_BUCKETS = (16e3, 64e3, 256e3, 512e3, 1e6, 2e6, 4e6, 8e6, 16e6, 32e6)
SAMPLE_INTERVAL_S = 5.0

HTTP_REQUESTS = Counter(
    "http_requests", "HTTP requests by route template and status.", ["method", "route", "status"], namespace="animegan"
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "Seconds to answer an HTTP request.", ["method", "route"], namespace="animegan"
)
JOBS_SUBMITTED = Counter("jobs_submitted", "Jobs accepted and queued.", namespace="animegan")
REJECTIONS = Counter("rejections", "Requests refused, by reason.", ["reason"], namespace="animegan")
# The same refusals by client: a key's name or "anonymous", never an address (bounded by the keys file).
CLIENT_REJECTIONS = Counter(
    "client_rejections",
    "Requests refused, by reason and client (key name).",
    ["reason", "client"],
    namespace="animegan",
)
RATE_LIMIT_ERRORS = Counter(
    "rate_limit_errors", "Requests let through unchecked because Redis could not be asked.", namespace="animegan"
)
DEDUP_HITS = Counter(
    "dedup_hits", "Uploads answered by an identical earlier job instead of a new one.", namespace="animegan"
)
UPLOAD_BYTES = Histogram(
    "upload_bytes", "Size of accepted image uploads in bytes.", namespace="animegan", buckets=UPLOAD_BUCKETS
)
VIDEOS_SUBMITTED = Counter("video_jobs_submitted", "Video jobs accepted and queued.", namespace="animegan")
VIDEO_UPLOAD_BYTES = Histogram(
    "video_upload_bytes",
    "Size of accepted clips in bytes.",
    namespace="animegan",
    buckets=(256e3, 1e6, 4e6, 16e6, 32e6, 64e6, 128e6, 256e6),
)
VIDEO_SEGMENTS_QUEUED = Counter(
    "video_segments_queued", "Segments queued for accepted video jobs.", namespace="animegan"
)
# No client label: clients are unbounded; the per-client cap is enforced, not exported.
EVENT_STREAMS = Gauge(
    "event_streams_open",
    "GET /jobs/{id}/events streams open in a gateway process.",
    namespace="animegan",
    multiprocess_mode="livesum",
)
for _reason in sorted(set(REJECTION_REASONS.values())):
    REJECTIONS.labels(_reason)

_process_stats = ProcessStats("api")


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


def observe_submitted(upload_bytes: int, *, deduplicated: bool) -> None:
    UPLOAD_BYTES.observe(upload_bytes)
    if deduplicated:
        DEDUP_HITS.inc()
    else:
        JOBS_SUBMITTED.inc()


def observe_video_submitted(upload_bytes: int, segments: int) -> None:
    VIDEO_UPLOAD_BYTES.observe(upload_bytes)
    VIDEOS_SUBMITTED.inc()
    VIDEO_SEGMENTS_QUEUED.inc(segments)


def observe_rejection(slug: str, *, client: str | None = None) -> None:
    """Count a refused request under its reason (and ``client``, a ClientIdentity.label, if given);
    problems that refuse nothing are ignored."""
    reason = REJECTION_REASONS.get(slug)
    if reason is not None:
        REJECTIONS.labels(reason).inc()
        if client is not None:
            CLIENT_REJECTIONS.labels(reason, client).inc()


def observe_rate_limit_error() -> None:
    RATE_LIMIT_ERRORS.inc()


def observe_event_streams(delta: int) -> None:
    """An event stream opened (+1) or ended (-1)."""
    EVENT_STREAMS.inc(delta)


def sample_process() -> None:
    """Refresh this process's RSS and disk IO series (a failed read is logged, never raised)."""
    _process_stats.sample_or_warn()


@contextlib.asynccontextmanager
async def process_sampler(interval_s: float = SAMPLE_INTERVAL_S) -> AsyncIterator[None]:
    """Keep this process's RSS and disk IO fresh while the app runs (between scrapes too)."""

    async def sample_forever() -> None:
        while True:
            sample_process()
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(sample_forever())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
