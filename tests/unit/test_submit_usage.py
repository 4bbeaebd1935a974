"""`animegan submit`: command-line mistakes exit 2 before anything is sent; an absent service fails each file."""

from __future__ import annotations

from pathlib import Path

import pytest

from animegan.cli import main
from animegan.redis_server import free_port


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ([], "the following arguments are required: --url"),
        (["--url", "ftp://host"], "--url must start with http:// or https://"),
        (["--url", "http://h", "--crop", "0,0,9,9"], "--crop needs --portrait"),
        (["--url", "http://h", "--concurrency", "0"], "must be at least 1"),
        (["--url", "http://h", "--timeout", "-1"], "must be more than 0"),
        (["--url", "http://h", "--format", "gif"], "invalid choice: 'gif'"),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, args: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    assert main(["submit", str(tmp_path / "a.jpg"), *args]) == 2
    assert complaint in capsys.readouterr().err


def test_out_that_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    (tmp_path / "taken").write_text("a file")
    assert main(["submit", str(tmp_path / "a.jpg"), "--url", "http://h", "--out", str(tmp_path / "taken")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_an_unreachable_service_fails_every_file_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.jpg", "b.png"):
        (tmp_path / name).write_bytes(b"\xff\xd8\xff\xe0")
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["submit", str(tmp_path), "--url", url, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("did not answer") == 2
    assert "0 written" in err
    assert "2 failed" in err
