"""The memory settings: sizes read as redis.conf reads them, bad values refused with one line."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from animegan.serve_options import ServeSettings
from api.config import ApiSettings, parse_size
from jobstore.settings import describe_errors


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("512mb", 512 * 2**20),
        ("512m", 512 * 10**6),
        ("2gb", 2 * 2**30),
        ("100000", 100_000),
        (" 8MB ", 8 * 2**20),
        (64, 64),
    ],
)
def test_sizes_read_like_redis_conf(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1", "1.5gb", "12 parsecs", "", True])
def test_bad_sizes_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_defaults_bound_the_embedded_redis_and_leave_the_budget_to_maxmemory() -> None:
    assert ServeSettings().redis_maxmemory == 512 * 2**20
    assert ApiSettings().store_budget_bytes == 0
    assert ApiSettings(store_budget_bytes="1gb").store_budget_bytes == 2**30


def test_a_bad_budget_names_its_variable_in_one_line() -> None:
    with pytest.raises(ValidationError) as caught:
        ApiSettings(store_budget_bytes="a lot")
    assert describe_errors(caught.value) == (
        "ANIMEGAN_STORE_BUDGET_BYTES: not a size: 'a lot' (examples: 512mb, 2gb, 0 for no limit)"
    )
