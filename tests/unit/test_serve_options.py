"""``animegan serve``'s first-run options and refusals: --style, --weights-dir, --fetch-missing, the port.

Each refusal is one line that names what to set, the flag and the environment variable. The
command-line cases run ``python -m animegan serve`` in a subprocess with a clean environment; every
one of them stops before any process is started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from animegan import serve_options
from animegan.serve_options import ServeRefused, apply_flags, check_port, check_styles, ensure_weights, split_styles
from inference.errors import WeightsError

ROOT = Path(__file__).resolve().parents[2]
HAYAO = ROOT.parent / "shared" / "weights" / "hayao.pt"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    serve_options.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def hayao_only(tmp_path: Path) -> Path:
    """A new user's offline folder: one hayao.pt, nothing else."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(HAYAO, folder / "hayao.pt")
    return folder


def _serve(*argv: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANIMEGAN_", "PROMETHEUS_"))}
    clean.update(env)
    command = [sys.executable, "-m", "animegan", "serve", *argv]
    return subprocess.run(command, env=clean, cwd=cwd, capture_output=True, text=True, timeout=120)


# -- argument handling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "styles"),
    [
        (["hayao"], ["hayao"]),
        (["hayao,paprika"], ["hayao", "paprika"]),
        (["paprika", "hayao, paprika", " "], ["paprika", "hayao"]),
    ],
)
def test_styles_repeat_or_comma_list_keep_order_without_repeats(values: list[str], styles: list[str]) -> None:
    assert split_styles(values) == styles


def test_first_style_becomes_the_default_and_flags_win_over_the_environment(hayao_only: Path) -> None:
    environ = {"ANIMEGAN_STYLES": "paprika", "ANIMEGAN_DEFAULT_STYLE": "paprika", "ANIMEGAN_WEIGHTS_DIR": "/elsewhere"}
    apply_flags(_args("--style", "hayao", "--style", "paprika,hayao", "--weights-dir", str(hayao_only)), environ)
    assert environ == {
        "ANIMEGAN_STYLES": "hayao,paprika",
        "ANIMEGAN_DEFAULT_STYLE": "hayao",
        "ANIMEGAN_WEIGHTS_DIR": str(hayao_only.resolve()),
    }


def test_without_flags_the_environment_is_left_alone() -> None:
    environ = {"ANIMEGAN_STYLES": "paprika"}
    apply_flags(_args(), environ)
    assert environ == {"ANIMEGAN_STYLES": "paprika"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--style", "nosuch"], "unknown style 'nosuch' in --style; known styles: face_paint_512_v2"),
        (["--style", ","], "--style needs a style name"),
        (["--weights-dir", "/no/such/folder"], "--weights-dir /no/such/folder: no such folder"),
    ],
)
def test_bad_flags_are_refused_with_the_flag_named(argv: list[str], message: str) -> None:
    with pytest.raises(ServeRefused, match=r"^animegan serve: ") as refused:
        apply_flags(_args(*argv), {})
    assert message in str(refused.value)


def test_default_style_outside_the_styles_names_flag_and_both_variables() -> None:
    with pytest.raises(ServeRefused) as refused:
        check_styles({"ANIMEGAN_STYLES": "hayao"})
    message = str(refused.value)
    assert "'face_paint_512_v2'" in message
    assert "ANIMEGAN_DEFAULT_STYLE is unset" in message
    assert "ANIMEGAN_STYLES=hayao" in message
    assert "--style hayao" in message
    check_styles({"ANIMEGAN_STYLES": "hayao", "ANIMEGAN_DEFAULT_STYLE": "hayao"})
    check_styles({})


def test_missing_weights_name_the_flag_the_variable_and_what_is_there(hayao_only: Path, tmp_path: Path) -> None:
    with pytest.raises(ServeRefused) as refused:
        ensure_weights(["face_paint_512_v2"], weights_dir=hayao_only, cache_dir=tmp_path / "cache", fetch=False)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("animegan serve: no weights for style 'face_paint_512_v2'")
    assert str(hayao_only / "face_paint_512_v2.pt") in message
    for advice in ("--weights-dir DIR", "ANIMEGAN_WEIGHTS_DIR=DIR", "animegan weights fetch face_paint_512_v2"):
        assert advice in message
    assert "--style NAME (or set ANIMEGAN_STYLES and ANIMEGAN_DEFAULT_STYLE)" in message
    assert "Weights found here for: hayao (e.g. --style hayao)" in message
    assert "--weights FILE" not in message  # serve has no such option
    ensure_weights(["hayao"], weights_dir=hayao_only, cache_dir=tmp_path / "cache", fetch=False)


def test_a_style_without_a_download_is_not_offered_a_fetch(tmp_path: Path) -> None:
    with pytest.raises(ServeRefused) as refused:
        ensure_weights(["hayao"], weights_dir=tmp_path, cache_dir=tmp_path / "cache", fetch=True)
    assert "weights fetch" not in str(refused.value)
    assert "Put hayao.pt in a folder and pass --weights-dir DIR" in str(refused.value)


def test_a_failed_download_says_why_and_what_to_set_offline(
    monkeypatch: pytest.MonkeyPatch, hayao_only: Path, tmp_path: Path
) -> None:
    def offline(style: str, cache_dir: Path | None = None, **_: object) -> Path:
        raise WeightsError("could not download") from urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("inference.weights.fetch_weights", offline)
    with pytest.raises(ServeRefused) as refused:
        ensure_weights(["face_paint_512_v2"], weights_dir=hayao_only, cache_dir=tmp_path / "cache", fetch=True)
    message = str(refused.value)
    assert message.startswith("animegan serve: cannot download the face_paint_512_v2 weights (Name or service")
    assert "--weights-dir DIR (or set ANIMEGAN_WEIGHTS_DIR=DIR)" in message
    assert "--style hayao" in message
    assert "weights fetch" not in message


def test_a_port_in_use_is_refused_naming_the_port_and_the_flag() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServeRefused) as refused:
            check_port("127.0.0.1", port)
    assert f"127.0.0.1:{port}" in str(refused.value)
    assert "already in use" in str(refused.value)
    assert "--port N" in str(refused.value)
    check_port("127.0.0.1", port)  # free again


# -- the command ---------------------------------------------------------------------------------


def test_new_user_offline_with_one_pt_file_gets_one_line_naming_the_fix(hayao_only: Path, tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = _serve("--weights-dir", str(hayao_only), env=env, cwd=ROOT)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no weights for style 'face_paint_512_v2'" in lines[0]
    assert "--style hayao" in lines[0]

    done = _serve(env={**env, "ANIMEGAN_WEIGHTS_DIR": str(hayao_only), "ANIMEGAN_STYLES": "hayao"}, cwd=ROOT)
    assert done.returncode == 2
    assert "is not among the styles served" in done.stderr
    assert "--style hayao" in done.stderr


def test_serve_refuses_a_busy_port_as_its_last_line_and_exits_non_zero(hayao_only: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = ["--weights-dir", str(hayao_only), "--style", "hayao", "--port", str(port)]
        done = _serve(*argv, env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, cwd=ROOT)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert f"cannot listen on 127.0.0.1:{port}" in last
    assert "--port N" in last
    assert "private Redis" not in done.stdout  # refused before anything started


def test_an_api_that_could_not_bind_is_reported_with_the_port_and_the_flag() -> None:
    """The port taken between serve's check and uvicorn's bind: the API exits, serve names the port."""
    import threading

    from animegan.serve import _Outcome, _supervise

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        api = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
        api.wait(30)
        outcome = _Outcome()
        _supervise({"api": api}, "127.0.0.1", port, "redis://127.0.0.1:9/0", threading.Event(), outcome)
    assert outcome.code == 1
    assert outcome.failure is not None
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in outcome.failure
    assert "--port N" in outcome.failure
