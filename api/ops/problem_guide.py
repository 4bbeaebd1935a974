"""What every problem type means to the person who meets it: when it happens and what to do.

One entry per slug of ``api.problems.PROBLEMS`` (answers of the gateway) and of
``jobstore.records.ErrorCode`` (a failed job's ``error.type``); the docs build stops and a test
fails when a slug has no entry, or an entry no slug. The gateway's ``GET /problems/{slug}`` pages
(``api.ops.problem_pages``) and the docs site's problem reference (``animegan.docsite``) are both
made from it, so the ``type`` URI a client follows and the site say the same. Text may use
`code spans`, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.problems import PROBLEMS
from jobstore.records import ErrorCode, error_title


@dataclass(frozen=True)
class ProblemGuide:
    when: str
    action: str


@dataclass(frozen=True)
class ProblemType:
    """One problem type as documented: its slug, title, HTTP status (None: only a job's error)."""

    slug: str
    title: str
    status: int | None
    job_error: bool
    when: str
    action: str


_RETRY = "Wait the `Retry-After` seconds of the answer, then send the request again."

GUIDE: dict[str, ProblemGuide] = {
    "malformed-request": ProblemGuide(
        "The multipart body cannot be parsed: no boundary, two image files sent to `/stylize`, a field over 4 KB, "
        "too many fields, or a batch's image sent as a text field.",
        "Send `multipart/form-data` with the image as a file part named `image` (curl: `-F image=@photo.jpg`) and "
        "only the documented fields.",
    ),
    "image-too-large": ProblemGuide(
        "The upload, or one file of a batch, is over `ANIMEGAN_MAX_UPLOAD_BYTES` (5 MiB by default): judged from "
        "`Content-Length` before the body is read, or while it streams in.",
        "Send a smaller file (re-encode it as JPEG, or scale it down: the service keeps at most "
        "`ANIMEGAN_MAX_SIDE` pixels a side anyway), or ask the operator to raise the limit.",
    ),
    "video-too-large": ProblemGuide(
        "`POST /videos`: the clip is over `ANIMEGAN_MAX_VIDEO_BYTES` (100 MiB by default): judged from "
        "`Content-Length` before the body is read, or while it streams in (the rest is not read).",
        "Send a shorter clip, or re-encode it at a lower bit rate (the service keeps at most "
        "`ANIMEGAN_VIDEO_MAX_SIDE` pixels a side anyway).",
    ),
    "unsupported-video": ProblemGuide(
        "`POST /videos`: the file is not MP4, MOV, WebM or MKV judged by its leading bytes, or its video is not "
        "H.264, H.265, VP9 or AV1.",
        "Convert the clip, e.g. `ffmpeg -i in.avi -c:v libx264 -c:a aac out.mp4`, and send it again.",
    ),
    "invalid-video": ProblemGuide(
        "The clip cannot be read or decoded: empty, cut short, corrupt, without a video stream, or frames whose "
        "timestamps cannot be put in order. As a job's error: a frame of the clip did not decode on the worker.",
        "Check that the file plays to its end in a player; re-encode it and send it again.",
    ),
    "video-too-long": ProblemGuide(
        "`POST /videos`: the clip lasts longer than `ANIMEGAN_MAX_VIDEO_SECONDS` (60 s by default), or it needs "
        "more segments of about 2 s than `ANIMEGAN_MAX_QUEUED_PER_CLIENT` or `ANIMEGAN_MAX_QUEUE_DEPTH` could "
        "ever admit at once (the detail names the longest clip that fits).",
        "Cut the clip to the length the detail names and send the parts one after the other.",
    ),
    "video-frames-too-large": ProblemGuide(
        "`POST /videos`: the clip's frames have more pixels than 4096x2160 (DCI 4K).",
        "Scale the clip down before sending it (e.g. `ffmpeg -i in.mp4 -vf scale=-2:1080 out.mp4`).",
    ),
    "unsupported-media-type": ProblemGuide(
        "The file is not a JPEG, PNG, WebP or HEIC/HEIF image judged by its leading bytes (whatever its name or "
        "Content-Type), or the request body is not multipart.",
        "Convert the image to JPEG, PNG, WebP or HEIC and send it as a multipart file part.",
    ),
    "validation-error": ProblemGuide(
        "A field is missing or invalid: no `image` part, an unknown style, format or mode, a bad crop. `errors` "
        "lists each field (`loc`) and why (`msg`).",
        "Fix the fields named in `errors`; `GET /styles` lists the styles this service offers.",
    ),
    "invalid-image": ProblemGuide(
        "The image cannot be decoded: empty, truncated or corrupt data, a zero-sized image, or oversized "
        "metadata. As a failed job's error: the worker could not read the input.",
        "Check that the file opens in an image viewer, export it again and resend it. Truncated images are "
        "never repaired.",
    ),
    "too-many-pixels": ProblemGuide(
        "The header declares more than `ANIMEGAN_MAX_PIXELS` pixels (a decompression bomb is refused before it "
        "is decoded), or decoding this image alone would need more than `ANIMEGAN_DECODE_MEMORY_BYTES`.",
        "Scale the image down before sending it; WebP costs the most memory to decode, JPEG the least.",
    ),
    "idempotency-key-reused": ProblemGuide(
        "The `Idempotency-Key` was used before for a different image, style or format.",
        "Use a new key for each distinct request; reuse a key only to retry the very same request.",
    ),
    "unauthorized": ProblemGuide(
        "The service has an API keys file and the request carries no valid `Authorization: Bearer <key>` "
        '(`error="invalid_token"` in `WWW-Authenticate` for an unknown or revoked key).',
        "Send your key as `Authorization: Bearer <key>`; the operator makes one with `animegan keys new NAME`.",
    ),
    "callback-url-refused": ProblemGuide(
        "`callback_url` is not http(s), is over 2048 characters, has no host or carries credentials, its host "
        "does not resolve or resolves to a non-public address, or webhooks are off (no "
        "`ANIMEGAN_WEBHOOK_SECRET`). `errors` names the field.",
        "Give a public http(s) URL; receivers on a private network need `ANIMEGAN_WEBHOOK_ALLOW_PRIVATE=true` on "
        "the service. Without webhooks, poll the job or follow its event stream.",
    ),
    "job-not-found": ProblemGuide(
        "The job id is unknown, the job's record expired (`ANIMEGAN_RECORD_TTL_S`), it was deleted, or it "
        "belongs to another client.",
        "Check the id (the `Location` of the 202 answer); submit the image again if the job is gone.",
    ),
    "batch-not-found": ProblemGuide(
        "The batch id is unknown, the batch expired with the last of its job records, or it belongs to another client.",
        "Check the id (the `Location` of the 202 answer); send the batch again if it is gone.",
    ),
    "too-many-files": ProblemGuide(
        "`POST /batches` carries more than `ANIMEGAN_MAX_BATCH_FILES` image parts (20 by default).",
        "Split the files into several batches.",
    ),
    "batch-rejected": ProblemGuide(
        "No file of a `POST /batches` is a usable image; `jobs` lists each file's own problem. Nothing was queued.",
        "Fix the files as each entry's problem says, then send the batch again.",
    ),
    "batch-not-ready": ProblemGuide(
        "`GET /batches/{id}/results.zip` was asked for before any job of the batch succeeded.",
        "Wait the `Retry-After` seconds, or follow `GET /batches/{id}/events` until the batch is `completed`.",
    ),
    "batch-no-results": ProblemGuide(
        "`results.zip` of a batch whose jobs all ended without a result: none succeeded, or every job was "
        "deleted or has expired.",
        "Read `GET /batches/{id}`: each job's `error` says why it failed.",
    ),
    "request-timeout": ProblemGuide(
        "The request body did not arrive within `ANIMEGAN_UPLOAD_TIMEOUT_S` (60 s by default).",
        "Send it again over a faster link, or send a smaller file.",
    ),
    "headers-too-large": ProblemGuide(
        "The request line and headers together are over `ANIMEGAN_MAX_HEADER_BYTES` (32 KiB); the server answers "
        "before the application and closes the connection.",
        "Send fewer or shorter headers (large cookies are the usual cause).",
    ),
    "result-expired": ProblemGuide(
        "The job succeeded but its result is gone: results are kept `ANIMEGAN_RESULT_TTL_S` after the job ended.",
        "Fetch results soon after the job succeeds; submit the image again to compute it anew.",
    ),
    "job-not-ready": ProblemGuide(
        "The result was asked for while the job is still queued or running.",
        "Wait the `Retry-After` seconds and ask again, or follow `GET /jobs/{id}/events` to the end.",
    ),
    "job-failed": ProblemGuide(
        "The result was asked for a job that failed; the detail is the job's error.",
        "Read `GET /jobs/{id}`: its `error` says why. Fix the input and submit it again.",
    ),
    "range-not-satisfiable": ProblemGuide(
        "A video's result was asked for with a `Range` header that starts past its end; `Content-Range` names "
        "its size.",
        "Ask for a range within the size in `Content-Range` (`bytes=0-` for all of it).",
    ),
    "idempotency-key-in-use": ProblemGuide(
        "The first request with this `Idempotency-Key` is still being accepted, or the key outlived its job.",
        "Send the same request again shortly.",
    ),
    "job-running": ProblemGuide(
        "`DELETE /jobs/{id}` of a job that a worker is computing right now.",
        "Wait the `Retry-After` seconds and delete it once it ended.",
    ),
    "client-quota": ProblemGuide(
        "This client already has `ANIMEGAN_MAX_QUEUED_PER_CLIENT` jobs (10 by default) queued or running; a "
        "batch needs room for all its files at once.",
        _RETRY + " The hint is when your next job should have ended.",
    ),
    "rate-limited": ProblemGuide(
        "The client sent more requests than `ANIMEGAN_RATE_LIMIT` allows.",
        _RETRY + " Poll less often, or follow the event stream instead of polling.",
    ),
    "too-many-streams": ProblemGuide(
        "`ANIMEGAN_MAX_EVENT_STREAMS_PER_CLIENT` event streams of this client, or `ANIMEGAN_MAX_EVENT_STREAMS` "
        "in all, are open in this API process.",
        "Close a stream, or poll `GET /jobs/{id}` instead; a slot frees as soon as a stream ends.",
    ),
    "queue-full": ProblemGuide(
        "`ANIMEGAN_MAX_QUEUE_DEPTH` jobs are waiting (backpressure). Identical uploads are still answered.",
        _RETRY + " The hint comes from the jobs waiting, the recent inference time and the live workers.",
    ),
    "store-full": ProblemGuide(
        "One more job might not fit in Redis's memory budget (`maxmemory`, or `ANIMEGAN_STORE_BUDGET_BYTES`).",
        _RETRY + " Operators: size Redis for the result TTL, or shorten `ANIMEGAN_RESULT_TTL_S`.",
    ),
    "too-many-uploads": ProblemGuide(
        "`ANIMEGAN_MAX_CONCURRENT_UPLOADS` request bodies are already being received by this API process.",
        _RETRY,
    ),
    "broker-unavailable": ProblemGuide(
        "Redis or the broker cannot be reached. As a failed job's error: its task could not be sent.",
        _RETRY + " Operators: check that Redis is up and reachable.",
    ),
    "store-unavailable": ProblemGuide(
        "With object storage (`ANIMEGAN_S3_BUCKET`): the store did not answer within its timeout, or failed, "
        "while the gateway stored an upload or read a result. Nothing was queued.",
        _RETRY + " Operators: check that the object store is up and reachable from the gateway.",
    ),
    "not-ready": ProblemGuide(
        "`GET /readyz` only: Redis is unreachable, or no worker process has a live heartbeat.",
        "Operators: start a worker, or bring Redis back; load balancers keep traffic away meanwhile.",
    ),
    "client-closed-request": ProblemGuide(
        "Never seen by a client: the client closed the connection before its body arrived. It names that outcome "
        "in `animegan_http_requests_total` (nginx's 499), so a dropped upload is no 5xx.",
        "Nothing; send the request again if it was dropped by accident.",
    ),
    "internal-error": ProblemGuide(
        "Anything unhandled: a bug. The detail is generic; the log has the traceback and the `request_id`. As a "
        "failed job's error: an unexpected failure in the worker.",
        "Retry once; if it persists, report it with the `request_id` (also in the `X-Request-ID` header).",
    ),
    "model-unavailable": ProblemGuide(
        "The worker has no usable weights for the job's style: the file is missing, corrupt or mismatching.",
        "Pick another style from `GET /styles`. Operators: supply the style's weights (`animegan weights fetch "
        "NAME`, or a `<style>.pt` file in `ANIMEGAN_WEIGHTS_DIR`).",
    ),
    "inference-timeout": ProblemGuide(
        "The job ran past `ANIMEGAN_TASK_SOFT_TIME_LIMIT_S`, or past the hard limit and its worker child was "
        "killed and replaced.",
        "Send a smaller image. Operators: raise the time limits, or lower `ANIMEGAN_MAX_SIDE`.",
    ),
    "input-expired": ProblemGuide(
        "The job waited in the queue longer than `ANIMEGAN_INPUT_TTL_S` and its input expired.",
        "Submit the image again. Operators: add workers, or lower `ANIMEGAN_MAX_QUEUE_DEPTH`.",
    ),
    "worker-lost": ProblemGuide(
        "The job's worker died `ANIMEGAN_MAX_ATTEMPTS` times while running it, so it was not run again (an input "
        "that kills workers cannot loop).",
        "Do not resend the same input unchanged. Operators: check the workers' memory limits and logs.",
    ),
}


def problem_types() -> list[ProblemType]:
    """Every problem type a client can meet, gateway answers first, in the order of their tables."""
    job_errors = {code.value: error_title(code) for code in ErrorCode}
    slugs = [*PROBLEMS, *(slug for slug in job_errors if slug not in PROBLEMS)]
    found = []
    for slug in slugs:
        status, title = PROBLEMS.get(slug, (None, job_errors.get(slug, "")))
        # A type without an entry still gets its page (title and status); the docs build and the tests
        # refuse it, so it never ships that way.
        guide = GUIDE.get(slug, ProblemGuide("", ""))
        found.append(ProblemType(slug, title, status, slug in job_errors, guide.when, guide.action))
    return found
