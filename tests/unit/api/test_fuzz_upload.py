"""Fuzzing POST /stylize through the real gateway app (ASGI, in process) with hypothesis.

The whole validation path runs for real: the body limit middleware, multipart parsing, the style
and format checks, magic-byte sniffing, decoding and downscaling, and the problem handlers. Only
the job store's Redis steps are answered in memory (fakes of the submission's parts), so this stays a unit test;
the real store is exercised by the integration and schemathesis tests. Whatever the request, the
answer is 202 or a 4xx ``application/problem+json`` whose ``status`` matches: never a 5xx.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from functools import cache
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from api.config import ApiSettings
from api.edge.images import ImageNormalizer
from api.jobs.admission import Admission
from api.jobs.dedup import Deduplicator
from api.jobs.deps import get_intake
from api.jobs.reader import JobReader
from api.jobs.sender import TaskSender
from api.jobs.store_budget import StoreBudget
from api.jobs.submit import Intake
from api.main import create_app
from api.tenancy.clients import ClientIdentity
from jobstore.queue import Admitted
from jobstore.records import JobRecord

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")]

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SETTINGS = ApiSettings(
    redis_url="redis://127.0.0.1:1/0", styles=["hayao", "paprika"], default_style="hayao", max_side=64
)
CONTENT_TYPES = ["image/jpeg", "image/png", "text/html", "application/octet-stream", "", "image/svg+xml"]


class NoDuplicates(Deduplicator):
    """No earlier job ever answers."""

    async def find_existing(self, client: str, upload_digest: str) -> JobRecord | None:
        return None


class OpenAdmission(Admission):
    """The store always has room, the queue is never full, every job is created, every wait is a second."""

    async def precheck(self, client: ClientIdentity, upload_sizes: Iterable[int]) -> None:
        return None

    async def admit_job(
        self, record: JobRecord, raw_rgb: bytes, client: ClientIdentity, idempotency_key: str | None, fingerprint: str
    ) -> Admitted:
        return Admitted("created", record.id, 1)

    async def estimate_wait_s(self, jobs_ahead: int) -> float:
        return 1.0


class Unsent(TaskSender):
    """Every message counts as sent; none goes anywhere."""

    async def send(self, record: JobRecord) -> bool:
        return True


class FirstInLine(JobReader):
    async def position(self, record: JobRecord) -> int | None:
        return 1


@cache
def _app() -> Any:
    """The real app with the submission's Redis-backed parts replaced (validation and decoding stay real)."""
    app = create_app(SETTINGS)
    store = app.state.store
    reader = FirstInLine(store)
    intake = Intake(
        settings=SETTINGS,
        store=store,
        reader=reader,
        dedup=NoDuplicates(store, reader),
        admission=OpenAdmission(SETTINGS, store, reader, StoreBudget(SETTINGS, store)),
        images=ImageNormalizer(SETTINGS),
        sender=Unsent(app.state.sender.celery, store),
    )
    app.dependency_overrides[get_intake] = lambda: intake
    return app


@cache
def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((48, 32)).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


async def _post(**kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/stylize", **kwargs)


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code == 202:
        job = response.json()
        assert max(job["input"]["width"], job["input"]["height"]) <= SETTINGS.max_side
        return
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == response.status_code
    assert body["type"].startswith("/problems/") or body["type"] == "about:blank"


image_bytes = st.one_of(
    st.binary(max_size=512),
    st.builds(lambda cut, junk: _jpeg()[:cut] + junk, st.integers(0, 2048), st.binary(max_size=64)),
    st.just(b""),
)
field_text = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["hayao", "paprika", "png", "webp", "gif"]))


@FUZZ
@given(
    image=image_bytes,
    filename=st.one_of(st.none(), st.text(max_size=30)),
    content_type=st.sampled_from(CONTENT_TYPES),
    style=field_text,
    fmt=field_text,
    extra=st.lists(st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=20)), max_size=10),
)
async def test_fuzzed_form_gets_202_or_a_4xx_problem(
    image: bytes, filename: str | None, content_type: str, style: str | None, fmt: str | None, extra: list[Any]
) -> None:
    files: list[tuple[str, Any]] = [("image", (filename, image, content_type) if filename is not None else image)]
    files += [("style", (None, style))] if style is not None else []
    files += [("format", (None, fmt))] if fmt is not None else []
    files += [(name, (None, value)) for name, value in extra]
    _check(await _post(files=files))


@FUZZ
@given(
    body=st.binary(max_size=1024),
    content_type=st.one_of(
        st.sampled_from(["multipart/form-data", "multipart/form-data; boundary=x", "application/json", ""]),
        st.text(max_size=60),
    ),
)
async def test_fuzzed_raw_body_gets_a_4xx_problem(body: bytes, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type.isascii() and content_type.isprintable() else {}
    _check(await _post(content=body, headers=headers))


async def test_a_valid_upload_passes_the_fuzzed_path() -> None:
    response = await _post(files={"image": ("p.jpg", _jpeg(), "image/jpeg")}, data={"style": "paprika"})
    assert response.status_code == 202
    assert response.json()["style"] == "paprika"
