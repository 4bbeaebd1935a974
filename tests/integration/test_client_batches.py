"""``Client.batch`` / ``AsyncClient.batch`` against the real gateway, real Redis and the real worker."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import anyio
import pytest

from animegan.client import ApiError, AsyncClient, Batch, Client
from imaging.decode import decode_image

ApiFactory = Callable[..., str]
Photo = Callable[[], bytes]


def check_results(batch: Batch, archive: bytes, images: list[bytes], names: list[str]) -> None:
    assert batch.done
    assert batch.counts["succeeded"] == len(images)
    assert all(job.succeeded for job in batch.jobs)
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        assert zipped.namelist() == names
        for name, image in zip(names, images, strict=True):
            assert (
                decode_image(zipped.read(name), max_side=4096).image.size
                == decode_image(image, max_side=128).image.size
            )


def test_sync_batch_round_trip(start_api: ApiFactory, worker_redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=worker_redis_url)
    images = [photo(), photo()]
    with Client(base) as client:
        batch = client.batch([images[0], io.BytesIO(images[1])], style="hayao", format="webp")
        assert batch.status == "in_progress"
        assert [item.filename for item in batch.items] == ["image", "image"]
        done = client.wait_batch(batch, timeout=180)
        check_results(done, client.batch_results(done), images, ["image.webp", "image-2.webp"])
        assert client.batch_status(done.id) == done


def test_async_batch_round_trip_and_a_refused_file(start_api: ApiFactory, worker_redis_url: str, photo: Photo) -> None:
    base = start_api(redis_url=worker_redis_url)
    image = photo()

    async def main() -> None:
        async with AsyncClient(base) as client:
            batch = await client.batch([image, b"not an image at all"], format="png")
            [refused] = [item for item in batch.items if item.job is None]
            assert refused.index == 1
            assert refused.problem is not None
            assert refused.problem["type"] == "/problems/unsupported-media-type"
            done = await client.wait_batch(batch.id, timeout=180)
            assert done.counts["rejected"] == 1
            check_results(done, await client.batch_results(done), [image], ["image.png"])
            with pytest.raises(ApiError) as caught:
                await client.batch([b"nope"])
            assert caught.value.status == 422
            assert caught.value.slug == "batch-rejected"

    anyio.run(main)
