"""``AsyncClient``: the service's HTTP API from async code (httpx; asyncio or trio, through anyio)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from animegan.client.errors import (
    ApiError,
    BatchTimeoutError,
    ClientError,
    JobFailedError,
    JobTimeoutError,
    ServiceUnreachableError,
)
from animegan.client.models import Batch, Job
from animegan.client.options import ClientOptions, deadline_after, remaining_s
from animegan.client.protocol import (
    CropInput,
    EventDecoder,
    ImageInput,
    RetryBudget,
    ServerSentEvent,
    State,
    VideoInput,
    batch_form,
    batch_of,
    batch_of_event,
    content_of,
    download_link,
    job_of,
    job_of_event,
    poll_delay,
    stylize_form,
    video_form,
)


class AsyncClient:
    """Submit photos and clips, follow their jobs and fetch the results.

    ``AsyncClient("http://127.0.0.1:8000", api_key=...)``; use it as a context manager (``async with``),
    or ``aclose()`` it, to release its connections. Errors are ``ClientError``s: ``ApiError`` for
    the service's refusals (with the problem document), ``ServiceUnreachableError`` when it does not
    answer.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry_for_s: float = 60.0,
        poll_interval_s: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = ClientOptions(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            retry_for_s=retry_for_s,
            poll_interval_s=poll_interval_s,
        )
        # ``transport``: httpx's hook for proxies, retries at the connection level, or instrumentation.
        self._http = httpx.AsyncClient(
            base_url=self.options.base_url, headers=self.options.headers(), timeout=timeout, transport=transport
        )
        # Presigned result links go straight to the object store: no base URL, and never the API key.
        self._downloads = httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._downloads.aclose()

    async def submit(
        self,
        image: ImageInput,
        style: str | None = None,
        format: str | None = None,
        mode: str | None = None,
        *,
        crop: CropInput | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """``POST /stylize``: the accepted (or deduplicated) job. A 429/503 answer is retried after its
        Retry-After while ``retry_for_s`` allows, then raised."""
        files, data = stylize_form(image, style=style, format=format, mode=mode, crop=crop)
        headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
        return await self._post_retried("/stylize", files, data, headers, job_of)

    async def job(self, job_id: str) -> Job:
        """``GET /jobs/{id}``: the job's current state."""
        return job_of(await self._request("GET", f"/jobs/{quote(job_id, safe='')}"))

    async def result(self, job: Job | str) -> bytes:
        """The image (a video's MP4) bytes: from the job's presigned link in the object store when it has a valid one
        (``links.download``), else (or if that fails) ``GET /jobs/{id}/result`` (ApiError 409 while not
        finished or when failed)."""
        link = download_link(job) if isinstance(job, Job) else None
        if link is not None:
            try:
                response = await self._downloads.get(link)
                if response.is_success:
                    return response.content
            except httpx.TransportError:
                pass  # the gateway serves the same bytes
        url = job.result_url if isinstance(job, Job) else f"/jobs/{quote(job, safe='')}/result"
        return content_of(await self._request("GET", url))

    async def wait(self, job: Job | str, timeout: float | None = None) -> Job:
        """Block until the job succeeds or fails and return it; JobTimeoutError after ``timeout`` seconds.

        Follows ``GET /jobs/{id}/events``; if the stream is refused or drops, polls ``GET /jobs/{id}``
        at the service's Retry-After pace instead.
        """
        deadline = deadline_after(timeout)
        current = job if isinstance(job, Job) else await self.job(job)
        events = self.options.events_url(current)
        return await self._wait(current, events, deadline, timeout, job_of, job_of_event, JobTimeoutError)

    async def stylize(
        self,
        image: ImageInput,
        style: str | None = None,
        format: str | None = None,
        mode: str | None = None,
        *,
        crop: CropInput | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Submit, wait and fetch in one call: the stylized image's bytes (JobFailedError if it failed)."""
        job = await self.wait(await self.submit(image, style, format, mode, crop=crop), timeout)
        if not job.succeeded:
            raise JobFailedError(job)
        return await self.result(job)

    async def submit_video(self, clip: VideoInput, style: str | None = None, *, callback_url: str | None = None) -> Job:
        """``POST /videos``: the accepted clip's job (``kind`` video, its ``segments`` and ``progress``). A path
        or a file is streamed, never read whole. A 429/503 answer is retried after its Retry-After while
        ``retry_for_s`` allows, then raised."""
        budget = RetryBudget(self.options.retry_for_s)
        while True:
            with video_form(clip, style=style, callback_url=callback_url) as (files, data):
                try:
                    return job_of(await self._request("POST", "/videos", files=files, data=data))
                except ApiError as exc:
                    delay = budget.delay_before_retry(exc)
                    if delay is None:
                        raise
            await anyio.sleep(delay)

    async def video(self, clip: VideoInput, style: str | None = None, *, timeout: float | None = None) -> bytes:
        """Submit a clip, wait and fetch in one call: the stylized MP4's bytes (JobFailedError if it failed)."""
        job = await self.wait(await self.submit_video(clip, style), timeout)
        if not job.succeeded:
            raise JobFailedError(job)
        return await self.result(job)

    async def batch(
        self,
        images: Sequence[ImageInput],
        style: str | None = None,
        format: str | None = None,
        mode: str | None = None,
        *,
        crop: CropInput | None = None,
        callback_url: str | None = None,
    ) -> Batch:
        """``POST /batches``: every image with the same options, as one batch (all admitted or none).
        A file the service refuses is an item with its ``problem``; a 429/503 answer is retried like
        ``submit``'s."""
        files, data = batch_form(images, style=style, format=format, mode=mode, crop=crop, callback_url=callback_url)
        return await self._post_retried("/batches", files, data, {}, batch_of)

    async def batch_status(self, batch: Batch | str) -> Batch:
        """``GET /batches/{id}``: the batch's current state."""
        url = batch.status_url if isinstance(batch, Batch) else f"/batches/{quote(batch, safe='')}"
        return batch_of(await self._request("GET", url))

    async def wait_batch(self, batch: Batch | str, timeout: float | None = None) -> Batch:
        """Block until every job of the batch ended and return it; BatchTimeoutError after ``timeout`` s.

        Follows ``GET /batches/{id}/events``; polls ``GET /batches/{id}`` if the stream is refused or drops.
        """
        deadline = deadline_after(timeout)
        current = batch if isinstance(batch, Batch) else await self.batch_status(batch)
        events = current.events_url
        return await self._wait(current, events, deadline, timeout, batch_of, batch_of_event, BatchTimeoutError)

    async def batch_results(self, batch: Batch | str) -> bytes:
        """``GET /batches/{id}/results.zip``: a zip of the results that succeeded so far, named after
        the uploads (ApiError 409 while none has)."""
        url = batch.results_url if isinstance(batch, Batch) else f"/batches/{quote(batch, safe='')}/results.zip"
        return content_of(await self._request("GET", url))

    async def _post_retried(
        self,
        url: str,
        files: Any,
        data: dict[str, str],
        headers: dict[str, str],
        parse: Callable[[httpx.Response], State],
    ) -> State:
        """POST and ``parse`` the answer (its ApiError for a refusal), retried after the Retry-After of a
        429/503 refusal while ``retry_for_s`` allows, then raised."""
        budget = RetryBudget(self.options.retry_for_s)
        while True:
            try:
                return parse(await self._request("POST", url, files=files, data=data, headers=headers))
            except ApiError as exc:
                delay = budget.delay_before_retry(exc)
                if delay is None:
                    raise
            await anyio.sleep(delay)

    async def _wait(
        self,
        current: State,
        events_url: str,
        deadline: float | None,
        timeout: float | None,
        of_response: Callable[[httpx.Response], State],
        of_event: Callable[[ServerSentEvent], State | None],
        timed_out: Callable[[State, float], ClientError],
    ) -> State:
        """Follow the event stream, then poll the status URL at the Retry-After pace, until ``current`` is done."""
        if current.done:
            return current
        current = await self._follow(current, events_url, of_event, deadline)
        delay = 0.0
        while not current.done:
            left = remaining_s(deadline)
            if left is not None and left <= 0:
                raise timed_out(current, timeout or 0.0)
            await anyio.sleep(delay if left is None else min(delay, left))
            response = await self._request("GET", current.status_url)
            current = of_response(response)
            delay = poll_delay(response, self.options.poll_interval_s)
        return current

    async def _follow(
        self,
        current: State,
        events_url: str,
        of_event: Callable[[ServerSentEvent], State | None],
        deadline: float | None,
    ) -> State:
        """States from the event stream until done; the last state seen if the stream does not last."""
        read_s = self.options.stream_read_timeout(remaining_s(deadline))
        try:
            async with self._http.stream(
                "GET",
                events_url,
                headers={"Accept": "text/event-stream"},
                timeout=httpx.Timeout(self.options.timeout, read=read_s),
            ) as response:
                if not self.options.is_event_stream(response):
                    return current
                decoder = EventDecoder()
                async for line in response.aiter_lines():
                    event = decoder.feed(line)
                    seen = of_event(event) if event is not None else None
                    current = seen or current
                    if current.done or (deadline is not None and time.monotonic() >= deadline):
                        return current
        except httpx.TransportError:
            pass  # refused, reset or silent: polling takes over
        return current

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnreachableError(f"{self.options.base_url} did not answer: {exc!r}") from exc
