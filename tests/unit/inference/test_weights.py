"""inference.weights: registry, resolution, verification, the torch-free reader, and fetching (local server only)."""

from __future__ import annotations

import collections
import http.server
import os
import pickle
import re
import shutil
import socket
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from inference.errors import WeightsError
from inference.weights import (
    DEFAULT_STYLE,
    EXPECTED_SHAPES,
    STYLES,
    available_styles,
    cached_weights_path,
    default_cache_dir,
    default_weights_dir,
    fetch_weights,
    git_blob_sha1,
    load_state_dict,
    load_state_dict_torch,
    resolve_weights,
    verify_weights,
)

SHARED = Path(__file__).resolve().parents[4] / "shared"


# --- registry -----------------------------------------------------------------------------------


def test_expected_layout_is_the_reference_state_dict() -> None:
    rows = (SHARED / "generator-state-dict.tsv").read_text().splitlines()
    reference = [
        (key, tuple(int(n) for n in shape.strip("()").split(",") if n.strip()))
        for key, shape in (r.split("\t") for r in rows)
    ]
    assert list(EXPECTED_SHAPES.items()) == reference
    assert len(EXPECTED_SHAPES) == 77
    assert sum(int(np.prod(shape)) for shape in EXPECTED_SHAPES.values()) == 2_143_552


def test_registry_pins_public_styles_and_upsampling_modes() -> None:
    assert DEFAULT_STYLE == "face_paint_512_v2"
    assert list(STYLES) == ["face_paint_512_v2", "face_paint_512_v1", "celeba_distill", "paprika", "hayao"]
    for name in ("face_paint_512_v2", "face_paint_512_v1", "celeba_distill", "paprika"):
        style = STYLES[name]
        assert style.url == f"https://github.com/bryandlee/animegan2-pytorch/raw/main/weights/{name}.pt"
        assert style.blob_sha1 is not None
        assert len(style.blob_sha1) == 40
    assert STYLES["hayao"].url is None
    assert STYLES["hayao"].blob_sha1 is None
    assert {name for name, style in STYLES.items() if style.align_corners} == {
        "face_paint_512_v2",
        "face_paint_512_v1",
        "celeba_distill",
    }
    assert all("non-commercial" in style.licence for style in STYLES.values())


def test_unknown_style_is_a_weights_error_listing_known_ones() -> None:
    with pytest.raises(WeightsError, match="known styles: face_paint_512_v2"):
        resolve_weights("nope")


# --- git blob id --------------------------------------------------------------------------------


def test_git_blob_sha1_matches_git_hash_object(tmp_path: Path, hayao_weights: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"hello\x00world\n" * 1000)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for path in (small, empty, hayao_weights):
        expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
        assert git_blob_sha1(path) == expected.stdout.strip()


# --- resolution ---------------------------------------------------------------------------------


def test_resolution_order(tmp_path: Path, hayao_weights: Path) -> None:
    weights_dir, cache_dir, explicit = tmp_path / "weights", tmp_path / "cache", tmp_path / "mine.pt"
    weights_dir.mkdir()
    cached = cached_weights_path("hayao", cache_dir)
    cached.parent.mkdir(parents=True)
    for path in (cached, weights_dir / "hayao.pt", explicit):
        shutil.copyfile(hayao_weights, path)
    assert cached == cache_dir / "weights" / "hayao.pt"

    def resolve(**kwargs: Any) -> Path:
        return resolve_weights("hayao", weights_dir=weights_dir, cache_dir=cache_dir, **kwargs)

    assert resolve(weights_path=explicit) == explicit
    assert resolve() == weights_dir / "hayao.pt"
    (weights_dir / "hayao.pt").unlink()
    assert resolve() == cached
    assert available_styles(weights_dir=weights_dir, cache_dir=cache_dir) == {
        "face_paint_512_v2": None,
        "face_paint_512_v1": None,
        "celeba_distill": None,
        "paprika": None,
        "hayao": cached,
    }


def test_missing_public_weights_say_how_to_supply_them(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as caught:
        resolve_weights("paprika", weights_dir=tmp_path / "w", cache_dir=tmp_path / "c")
    message = str(caught.value)
    assert "animegan weights fetch paprika" in message
    assert "ANIMEGAN_WEIGHTS_DIR" in message
    assert str(tmp_path / "w" / "paprika.pt") in message


def test_missing_hayao_says_it_has_no_download(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"no public download: put hayao\.pt in the directory named by"):
        resolve_weights("hayao", weights_dir=tmp_path, cache_dir=tmp_path)


def test_missing_explicit_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"gone\.pt does not exist"):
        resolve_weights("hayao", weights_path=tmp_path / "gone.pt")


def test_defaults_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIMEGAN_WEIGHTS_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("ANIMEGAN_CACHE_DIR", str(tmp_path / "c"))
    assert default_weights_dir() == tmp_path / "w"
    assert default_cache_dir() == tmp_path / "c"
    assert cached_weights_path("paprika") == tmp_path / "c" / "weights" / "paprika.pt"
    monkeypatch.delenv("ANIMEGAN_WEIGHTS_DIR")
    monkeypatch.delenv("ANIMEGAN_CACHE_DIR")
    assert default_weights_dir() is None
    assert default_cache_dir().name == "animegan"


# --- torch-free reader --------------------------------------------------------------------------


def test_torch_free_reader_equals_torch_load_bit_for_bit(hayao_weights: Path) -> None:
    ours = load_state_dict(hayao_weights)
    reference = torch.load(hayao_weights, map_location="cpu", weights_only=True)
    assert list(ours) == list(reference)
    for key, tensor in reference.items():
        array = ours[key]
        assert array.dtype == np.float32
        assert array.flags.c_contiguous
        assert array.shape == tuple(tensor.shape)
        assert array.tobytes() == tensor.contiguous().numpy().tobytes()


def test_torch_reference_loader_checks_the_same_layout(hayao_weights: Path) -> None:
    state = load_state_dict_torch(hayao_weights)
    assert list(state) == list(EXPECTED_SHAPES)
    assert all(isinstance(tensor, torch.Tensor) for tensor in state.values())


def test_reader_honours_storage_offsets_and_strides(tmp_path: Path) -> None:
    state = random_state_dict()
    # A transposed view and a slice share storages with other tensors: offsets and strides matter.
    base = torch.randn(64, 128)
    state["block_b.0.2.weight"] = base[3, :]
    state["block_a.0.2.weight"] = base.t()[5, :32]
    path = tmp_path / "strided.pt"
    torch.save(state, path)
    loaded = load_state_dict(path)
    for key, tensor in state.items():
        assert np.array_equal(loaded[key], tensor.numpy()), key


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def write_checkpoint(path: Path, payload: bytes, storages: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", data)


@pytest.mark.parametrize("hostile", ["os.system", "builtins.eval"])
def test_reader_refuses_forbidden_globals_before_running_them(tmp_path: Path, hostile: str) -> None:
    marker = tmp_path / "pwned"
    if hostile == "os.system":
        payload = pickle.dumps(collections.OrderedDict(x=Evil(marker)), protocol=2)
    else:
        payload = b"\x80\x02cbuiltins\neval\nq\x00X\x0b\x00\x00\x00print('hi')q\x01\x85q\x02Rq\x03."
    path = tmp_path / "evil.pt"
    write_checkpoint(path, payload)
    with pytest.raises(WeightsError, match="forbidden global") as caught:
        load_state_dict(path)
    assert str(path) in str(caught.value)
    assert not marker.exists()
    with pytest.raises(WeightsError):
        verify_weights(path, "hayao")


def test_reader_refuses_a_storage_smaller_than_declared(tmp_path: Path) -> None:
    real = tmp_path / "real.pt"
    torch.save(random_state_dict(), real)
    with zipfile.ZipFile(real) as archive:
        prefix = next(name for name in archive.namelist() if name.endswith("/data.pkl"))[: -len("data.pkl")]
        payload = archive.read(f"{prefix}data.pkl")
        storages = {
            name[len(prefix) + len("data/") :]: archive.read(name)
            for name in archive.namelist()
            if name.startswith(f"{prefix}data/")
        }
    storages["0"] = storages["0"][:-4]
    path = tmp_path / "short.pt"
    write_checkpoint(path, payload.replace(prefix.rstrip("/").encode(), b"archive"), storages)
    with pytest.raises(WeightsError, match="does not hold the"):
        load_state_dict(path)


def test_reader_refuses_a_broadcast_bomb(tmp_path: Path) -> None:
    state = random_state_dict()
    state["block_a.0.2.weight"] = torch.zeros(1).expand(10**7)
    path = tmp_path / "broadcast.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="more elements than its storage"):
        load_state_dict(path)


@pytest.mark.parametrize("keep", [0, 100, 0.5, -100])
def test_truncated_copies_are_refused_naming_the_file(tmp_path: Path, hayao_weights: Path, keep: float) -> None:
    data = hayao_weights.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[:cut])
    with pytest.raises(WeightsError) as caught:
        load_state_dict(path)
    assert str(path) in str(caught.value)
    with pytest.raises(WeightsError, match=re.escape(str(path))):
        verify_weights(path, "hayao")


def test_corrupted_copy_is_refused_naming_the_file(tmp_path: Path, hayao_weights: Path) -> None:
    data = bytearray(hayao_weights.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    path = tmp_path / "corrupted.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=re.escape(str(path))):
        verify_weights(path, "hayao")


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return collections.OrderedDict(
        (key, torch.randn(shape, generator=generator)) for key, shape in EXPECTED_SHAPES.items()
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("block_c.2.layers.1.1.bias"), "1 missing keys \\(block_c.2.layers.1.1.bias\\)"),
        (lambda s: s.update(extra=torch.zeros(1)), "1 unexpected keys \\(extra\\)"),
        (
            lambda s: s.update({"out_layer.0.weight": torch.zeros(3, 32, 3, 3)}),
            "out_layer.0.weight is \\(3, 32, 3, 3\\)",
        ),
        (lambda s: s.update({"block_a.0.2.bias": torch.zeros(32, dtype=torch.float64)}), "expected float32"),
        (lambda s: s["block_d.1.2.weight"].__setitem__(0, float("nan")), "non-finite values in block_d.1.2.weight"),
    ],
)
def test_structural_check_names_what_is_wrong(tmp_path: Path, change: Any, message: str) -> None:
    state = random_state_dict()
    change(state)
    path = tmp_path / "custom.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=message):
        load_state_dict(path)
    with pytest.raises(WeightsError, match=message):
        load_state_dict_torch(path)


def test_a_valid_random_checkpoint_loads(tmp_path: Path) -> None:
    path = tmp_path / "random.pt"
    torch.save(random_state_dict(), path)
    assert list(load_state_dict(path)) == list(EXPECTED_SHAPES)
    verify_weights(path, "hayao")


# --- verification -------------------------------------------------------------------------------


def test_hayao_verifies_structurally(hayao_weights: Path) -> None:
    verify_weights(hayao_weights, "hayao")


def test_digest_mismatch_for_a_registry_style(tmp_path: Path, hayao_weights: Path) -> None:
    path = tmp_path / "paprika.pt"
    shutil.copyfile(hayao_weights, path)
    with pytest.raises(WeightsError) as caught:
        verify_weights(path, "paprika")
    message = str(caught.value)
    assert str(path) in message
    assert STYLES["paprika"].blob_sha1 is not None
    assert f"expected git blob id {STYLES['paprika'].blob_sha1}, got {git_blob_sha1(hayao_weights)}" in message
    assert "animegan weights fetch paprika" in message


def test_verify_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"missing\.pt does not exist"):
        verify_weights(tmp_path / "missing.pt", "paprika")


# --- fetch (against a local server; no network) -------------------------------------------------


@dataclass
class LocalServer:
    root: Path
    port: int
    requests: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[LocalServer]:
    root = tmp_path / "served"
    root.mkdir()
    server_info = LocalServer(root, 0)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            server_info.requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    server_info.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server_info
    server.shutdown()
    server.server_close()
    thread.join()


def test_fetch_downloads_verifies_and_caches(tmp_path: Path, hayao_weights: Path, local_server: LocalServer) -> None:
    shutil.copyfile(hayao_weights, local_server.root / "hayao.pt")
    cache_dir = tmp_path / "cache"
    path = fetch_weights("hayao", cache_dir, url=local_server.url("hayao.pt"), progress=False)
    assert path == cache_dir / "weights" / "hayao.pt"
    assert path.read_bytes() == hayao_weights.read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["hayao.pt"]
    assert resolve_weights("hayao", weights_dir=tmp_path / "none", cache_dir=cache_dir) == path
    # Already cached and valid: no second download.
    assert fetch_weights("hayao", cache_dir, url=local_server.url("hayao.pt"), progress=False) == path
    assert local_server.requests == ["/hayao.pt"]


def test_fetch_replaces_a_corrupt_cached_file(tmp_path: Path, hayao_weights: Path, local_server: LocalServer) -> None:
    shutil.copyfile(hayao_weights, local_server.root / "hayao.pt")
    cached = cached_weights_path("hayao", tmp_path)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not weights")
    fetch_weights("hayao", tmp_path, url=local_server.url("hayao.pt"), progress=False)
    assert cached.read_bytes() == hayao_weights.read_bytes()


def test_fetch_keeps_nothing_when_the_digest_mismatches(
    tmp_path: Path, hayao_weights: Path, local_server: LocalServer
) -> None:
    shutil.copyfile(hayao_weights, local_server.root / "paprika.pt")
    with pytest.raises(WeightsError, match=f"expected git blob id {STYLES['paprika'].blob_sha1}"):
        fetch_weights("paprika", tmp_path, url=local_server.url("paprika.pt"), progress=False)
    assert list((tmp_path / "weights").iterdir()) == []


def test_fetch_keeps_nothing_when_the_download_is_truncated(
    tmp_path: Path, hayao_weights: Path, local_server: LocalServer
) -> None:
    (local_server.root / "hayao.pt").write_bytes(hayao_weights.read_bytes()[:100_000])
    with pytest.raises(WeightsError, match="not usable weights; not kept"):
        fetch_weights("hayao", tmp_path, url=local_server.url("hayao.pt"), progress=False)
    assert list((tmp_path / "weights").iterdir()) == []


def test_fetch_reports_http_errors(tmp_path: Path, local_server: LocalServer) -> None:
    with pytest.raises(WeightsError, match="HTTP 404"):
        fetch_weights("paprika", tmp_path, url=local_server.url("missing.pt"), progress=False)


def test_fetch_offline_gives_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WeightsError, match=r"If this machine is offline, download paprika\.pt elsewhere"):
        fetch_weights("paprika", tmp_path, url=f"http://127.0.0.1:{port}/paprika.pt", progress=False, timeout=5)
    assert list((tmp_path / "weights").iterdir()) == []


def test_fetch_hayao_without_a_url_explains_there_is_none(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no public download"):
        fetch_weights("hayao", tmp_path, progress=False)


def test_fetch_refuses_non_http_urls(tmp_path: Path, hayao_weights: Path) -> None:
    with pytest.raises(WeightsError, match="http or https only"):
        fetch_weights("hayao", tmp_path, url=hayao_weights.as_uri(), progress=False)
