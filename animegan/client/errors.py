"""What the client raises: every error is a ``ClientError``; the service's refusals are ``ApiError``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from animegan.client.models import Batch, Job


class ClientError(Exception):
    """Base class of everything this client raises on purpose."""


class ApiError(ClientError):
    """The service answered with an error: ``status``, its RFC 9457 ``problem`` document, ``retry_after``.

    ``problem`` always has ``type``, ``title``, ``status`` and ``detail`` (an answer that was not a
    problem document, e.g. a proxy's HTML page, is described as ``about:blank``); a validation
    error also has ``errors: [{loc, msg}]``. ``retry_after`` is the Retry-After header in seconds.
    """

    def __init__(self, status: int, problem: dict[str, Any], retry_after: float | None = None) -> None:
        self.status = status
        self.problem = problem
        self.retry_after = retry_after
        super().__init__(f"{status} {problem.get('title', 'Error')}: {problem.get('detail', '')}".rstrip(": "))

    @property
    def slug(self) -> str:
        """The end of the problem type (``/problems/queue-full`` -> ``queue-full``)."""
        return str(self.problem.get("type", "about:blank")).rsplit("/", 1)[-1]


class ServiceUnreachableError(ClientError):
    """No answer from the service: connection refused or reset, DNS failure, timeout."""


class JobFailedError(ClientError):
    """The job ended ``failed``; ``job.error`` says why (its ``type``, ``title`` and ``detail``)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        reason = job.error.detail if job.error is not None else "no reason given"
        super().__init__(f"job {job.id} failed: {reason}")


class JobTimeoutError(ClientError, TimeoutError):
    """``wait`` gave up before the job ended; ``job`` is the last state seen."""

    def __init__(self, job: Job, timeout_s: float) -> None:
        self.job = job
        super().__init__(f"job {job.id} still {job.status} after {timeout_s:g} s")


class BatchTimeoutError(ClientError, TimeoutError):
    """``wait_batch`` gave up before every job of the batch ended; ``batch`` is the last state seen."""

    def __init__(self, batch: Batch, timeout_s: float) -> None:
        self.batch = batch
        super().__init__(f"batch {batch.id} still {batch.status} after {timeout_s:g} s")
