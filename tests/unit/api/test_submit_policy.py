"""The submission policy of ``submit_job`` and ``submit_batch``: which steps run, in which order.

The order is the use case's: idempotency, dedup, then the store budget, depth and quota
(``Admission.precheck``), decode, ADMIT, the task message. Each part is a fake that writes its
step into one log, so a reordered or skipped step fails here; the real parts are exercised
against Redis by the integration tests (test_api_http, test_batches, test_store_budget ...).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any, cast

import pytest
from PIL import Image

from api.batches.reader import BatchReader
from api.batches.submit import submit_batch
from api.config import ApiSettings
from api.edge.images import NormalizedImage
from api.edge.upload import UploadedFile
from api.jobs.request import JobRequest, new_record
from api.jobs.submit import Intake, submit_job
from api.problems import ApiError
from api.tenancy.clients import address_client
from jobstore.batch_view import Batch
from jobstore.batches import BatchRecord
from jobstore.job_view import Job
from jobstore.keys import idempotency_key
from jobstore.queue import Admitted, encode_idempotency, upload_digest
from jobstore.records import JobRecord, JobState

pytestmark = pytest.mark.anyio

SETTINGS = ApiSettings(redis_url="redis://127.0.0.1:1/0", styles=["hayao"], default_style="hayao", max_side=64)
CLIENT = address_client("203.0.113.7")


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


class Parts:
    """Every part a submission uses, recording the steps into ``log``."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.stored: dict[str, str] = {}  # the store's idempotency values
        self.records: dict[str, JobRecord] = {}
        self.earlier: JobRecord | None = None  # what dedup finds
        self.refusal: ApiError | None = None  # what the precheck raises
        self.admitted = "created"
        self.sent_ok = True
        self.batch: tuple[BatchRecord, list[tuple[JobRecord, bytes]]] | None = None

    # store (idempotency lookup)
    async def get(self, key: str) -> str | None:
        self.log.append("idempotency")
        return self.stored.get(key)

    # dedup
    async def find_existing(self, client: str, digest: str) -> JobRecord | None:
        self.log.append("dedup")
        return self.earlier

    # admission
    async def precheck(self, client: Any, upload_sizes: Iterable[int]) -> None:
        self.log.append(f"precheck {list(upload_sizes)}")
        if self.refusal is not None:
            raise self.refusal

    async def admit_job(self, record: JobRecord, raw: bytes, client: Any, key: str | None, fp: str) -> Admitted:
        self.log.append("admit")
        self.records[record.id] = record
        return Admitted(self.admitted, record.id if self.admitted == "created" else "X" * 22, 1)

    async def admit_batch(self, batch: BatchRecord, jobs: Sequence[tuple[JobRecord, bytes]], client: Any) -> None:
        self.log.append(f"admit batch of {len(jobs)}")
        self.batch = (batch, list(jobs))

    async def poll_hint(self, jobs_ahead: int) -> int:
        return 3

    # images
    async def normalize(self, data: bytes, *, style: str, fmt: str, mode: str, crop: object) -> NormalizedImage:
        self.log.append("decode")
        return NormalizedImage(b"\0" * 12, 2, 2, 8, 6, "d" * 64)

    # sender
    async def send(self, record: JobRecord) -> bool:
        self.log.append("send")
        return self.sent_ok

    # reader
    async def read(self, job_id: str, client: str | None = None) -> JobRecord | None:
        return self.records.get(job_id)

    async def position(self, record: JobRecord) -> int | None:
        return 1 if record.state is JobState.QUEUED else None

    def body(self, record: JobRecord, *, position: int | None = None, deduplicated: bool = False) -> Job:
        return Job.from_record(record, position=position, deduplicated=deduplicated)

    def intake(self) -> Intake:
        part = cast(Any, self)
        return Intake(SETTINGS, part, part, part, part, part, part)


def _request(**changes: Any) -> JobRequest:
    return JobRequest(**{"client": CLIENT, "style": "hayao", "format": "png", **changes})


def _record(job_id: str, state: JobState = JobState.QUEUED) -> JobRecord:
    image = NormalizedImage(b"\0" * 12, 2, 2, 8, 6, "d" * 64)
    return new_record(job_id, _request(), image, SETTINGS, upload_digest=None).model_copy(update={"state": state})


async def test_a_new_upload_is_deduplicated_prechecked_decoded_admitted_then_sent() -> None:
    parts = Parts()
    submitted = await submit_job(PNG, _request(), parts.intake())
    assert parts.log == ["dedup", f"precheck [{len(PNG)}]", "decode", "admit", "send"]
    assert submitted.answer == "created"
    assert submitted.described.job.status is JobState.QUEUED
    assert submitted.described.poll_hint_s == 3


async def test_not_an_image_is_refused_before_any_step() -> None:
    parts = Parts()
    with pytest.raises(ApiError) as refused:
        await submit_job(b"<html>", _request(), parts.intake())
    assert refused.value.slug == "unsupported-media-type"
    assert parts.log == []


async def test_the_clients_identical_job_answers_without_a_precheck_or_a_decode() -> None:
    parts = Parts()
    parts.earlier = parts.records["E" * 22] = _record("E" * 22, JobState.SUCCEEDED)
    submitted = await submit_job(PNG, _request(), parts.intake())
    assert parts.log == ["dedup"]
    assert submitted.answer == "deduplicated"
    assert submitted.described.job.id == "E" * 22
    assert submitted.described.poll_hint_s is None  # it has ended


@pytest.mark.parametrize("changes", [{"idempotency_key": "k-1"}, {"callback_url": "https://example.com/hook"}])
async def test_a_key_or_a_callback_skips_dedup(changes: dict[str, str]) -> None:
    parts = Parts()
    parts.earlier = _record("E" * 22)
    submitted = await submit_job(PNG, _request(**changes), parts.intake())
    steps = ["precheck", "decode", "admit", "send"]
    assert [step.split()[0] for step in parts.log] == (["idempotency"] if "idempotency_key" in changes else []) + steps
    assert submitted.answer == "created"


async def test_a_retried_key_replays_its_first_job_before_anything_else() -> None:
    parts = Parts()
    parts.records["F" * 22] = _record("F" * 22, JobState.RUNNING)
    fingerprint = upload_digest(PNG, "hayao", "png", SETTINGS.max_side)
    parts.stored[idempotency_key(CLIENT.id, "k-1")] = encode_idempotency("F" * 22, fingerprint)
    submitted = await submit_job(PNG, _request(idempotency_key="k-1"), parts.intake())
    assert parts.log == ["idempotency"]
    assert submitted.answer == "replayed"
    assert submitted.described.job.id == "F" * 22


async def test_a_key_of_another_request_is_refused_before_dedup() -> None:
    parts = Parts()
    parts.stored[idempotency_key(CLIENT.id, "k-1")] = encode_idempotency("F" * 22, "another request")
    with pytest.raises(ApiError) as refused:
        await submit_job(PNG, _request(idempotency_key="k-1"), parts.intake())
    assert refused.value.slug == "idempotency-key-reused"
    assert parts.log == ["idempotency"]


async def test_a_refused_precheck_decodes_nothing() -> None:
    parts = Parts()
    parts.refusal = ApiError("queue-full", "full", headers={"Retry-After": "9"})
    with pytest.raises(ApiError) as refused:
        await submit_job(PNG, _request(), parts.intake())
    assert refused.value.slug == "queue-full"
    assert parts.log == ["dedup", f"precheck [{len(PNG)}]"]


async def test_an_unsent_message_is_a_503_after_admission() -> None:
    parts = Parts()
    parts.sent_ok = False
    with pytest.raises(ApiError) as refused:
        await submit_job(PNG, _request(), parts.intake())
    assert refused.value.slug == "broker-unavailable"
    assert parts.log[-2:] == ["admit", "send"]


async def test_an_identical_job_admitted_meanwhile_answers_and_nothing_is_sent() -> None:
    parts = Parts()
    parts.admitted = "deduplicated"
    parts.records["X" * 22] = _record("X" * 22)
    submitted = await submit_job(PNG, _request(), parts.intake())
    assert submitted.answer == "deduplicated"
    assert submitted.described.job.id == "X" * 22
    assert "send" not in parts.log


class Batches:
    """The batch as ``describe`` reads it back, from what the fake admitted."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    async def describe(self, batch_id: str, client: str) -> Batch | None:
        assert self.parts.batch is not None
        batch, jobs = self.parts.batch
        return Batch.build(batch, [None for _ in jobs])


async def test_a_batch_is_prechecked_for_every_file_before_any_decode_and_admitted_once() -> None:
    parts = Parts()
    files = [UploadedFile("a.png", PNG), UploadedFile("b.txt", b"not an image"), UploadedFile("c.png", PNG)]
    batch = await submit_batch(files, _request(), parts.intake(), cast(BatchReader, Batches(parts)))
    sizes = [len(PNG), len(b"not an image"), len(PNG)]
    assert parts.log == [f"precheck {sizes}", "decode", "decode", "admit batch of 2", "send", "send"]
    assert [item.problem is not None for item in batch.jobs] == [False, True, False]
    assert parts.batch is not None
    assert all(record.upload_digest is None for record, _ in parts.batch[1])  # no later upload is answered by one


async def test_a_batch_without_a_usable_file_is_refused_before_admission() -> None:
    parts = Parts()
    with pytest.raises(ApiError) as refused:
        await submit_batch(
            [UploadedFile("b.txt", b"nope")], _request(), parts.intake(), cast(BatchReader, Batches(parts))
        )
    assert refused.value.slug == "batch-rejected"
    assert refused.value.extra["jobs"][0]["problem"]["type"] == "/problems/unsupported-media-type"
    assert parts.log == ["precheck [4]"]
