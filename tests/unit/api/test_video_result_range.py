"""api.jobs.video_result.byte_range: the single byte ranges players ask for, and the ones refused."""

from __future__ import annotations

import pytest

from api.jobs.video_result import byte_range
from api.problems import ApiError


@pytest.mark.parametrize(
    ("header", "span"),
    [
        (None, None),
        ("bytes=0-99", (0, 100)),
        ("bytes=100-", (100, 1000)),
        ("bytes=-10", (990, 1000)),
        ("bytes=900-5000", (900, 1000)),  # past the end: up to the end
        ("bytes=0-1,5-9", None),  # several ranges: the whole body
        ("items=0-5", None),  # another unit: the whole body
        ("bytes=-", None),
        ("bytes=10-5", None),  # last before first: an invalid header, ignored (RFC 9110 14.1.1)
    ],
)
def test_single_ranges_are_read_and_others_mean_the_whole_body(
    header: str | None, span: tuple[int, int] | None
) -> None:
    assert byte_range(header, 1000) == span


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_outside_the_result_is_416_naming_its_size(header: str) -> None:
    with pytest.raises(ApiError) as refused:
        byte_range(header, 1000)
    assert refused.value.status == 416
    assert refused.value.headers["Content-Range"] == "bytes */1000"
