"""Generator weights: the style registry, finding a weights file, verifying it, reading it without torch.

Owns the list of styles and everything about their ``.pt`` files. Imports stdlib, numpy and
platformdirs (tqdm lazily, for ``fetch_weights``); torch only lazily in
``load_state_dict_torch`` (the reference path). Must not import web or queue packages.

Where a style's file is looked for, in order (``resolve_weights``; it never downloads):

1. an explicit ``weights_path``;
2. ``<weights_dir>/<style>.pt`` (``ANIMEGAN_WEIGHTS_DIR``; for offline installs);
3. ``<cache_dir>/weights/<style>.pt`` (``ANIMEGAN_CACHE_DIR``, else the user cache dir,
   e.g. ``~/.cache/animegan``), where ``animegan weights fetch NAME`` puts downloads.

Public styles are pinned by the git blob id of their file in bryandlee/animegan2-pytorch
(``sha1(b"blob <size>\\0" + content)``, what ``git hash-object`` prints). A style without a
public download (``hayao``) is verified structurally instead: all 77 tensors of the
generator, right shapes, float32, finite.

``load_state_dict`` reads the PyTorch zip checkpoint format (``<prefix>/data.pkl`` plus raw
storages in ``<prefix>/data/<key>``) with an unpickler that resolves only an OrderedDict,
tensor rebuilding and typed storage names: a checkpoint that references anything else
(``os.system``, ``builtins.eval``, ...) is refused before any of it runs.
"""

from __future__ import annotations

import collections
import hashlib
import http.client
import io
import logging
import math
import os
import pickle
import struct
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import platformdirs

from inference import network
from inference.errors import WeightsError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEFAULT_STYLE: Final = "face_paint_512_v2"
WEIGHTS_LICENCE: Final = (
    "Weights derived from AnimeGANv2 (TachibanaYoshino/AnimeGANv2); its author permits "
    "non-commercial use only (commercial use by request). PyTorch conversion: bryandlee/animegan2-pytorch."
)
_RELEASE_URL = "https://github.com/bryandlee/animegan2-pytorch/raw/main/weights/{name}.pt"
_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
# A generator checkpoint is ~8.6 MB; anything far beyond is not one (and may be a zip bomb).
_MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
_MAX_PICKLE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Style:
    """One generator checkpoint the service knows by name."""

    name: str
    url: str | None
    blob_sha1: str | None
    align_corners: bool
    description: str
    licence: str = WEIGHTS_LICENCE


def _public(name: str, blob_sha1: str, align_corners: bool, description: str) -> Style:
    return Style(name, _RELEASE_URL.format(name=name), blob_sha1, align_corners, description)


STYLES: Final[Mapping[str, Style]] = MappingProxyType(
    {
        style.name: style
        for style in (
            _public(
                "face_paint_512_v2",
                "d75102f8f201ddaf8dbe6b913b1a97585b55f838",
                True,
                "Portraits, strong anime look (face paint v2, trained at 512 px). The default.",
            ),
            _public(
                "face_paint_512_v1",
                "19c1a1da4d9580186109a2b055d91044e5127de6",
                True,
                "Portraits, softer and closer to the photo (face paint v1).",
            ),
            _public(
                "celeba_distill",
                "3b7ea61b02254980831cc3bc77af30666dbc999c",
                True,
                "Faces, light smooth stylisation (distilled on CelebA).",
            ),
            _public(
                "paprika",
                "58086c9db9fc7a9e5c2876ca31b8079599352643",
                False,
                "Scenes and landscapes, vivid colours (Paprika, Satoshi Kon).",
            ),
            Style(
                "hayao",
                None,
                None,
                False,
                "Scenes and landscapes, painted look (Hayao Miyazaki). No public PyTorch download: supply hayao.pt.",
            ),
        )
    }
)


# Key -> shape of the generator's state dict, derived from the network's one description.
EXPECTED_SHAPES: Final[Mapping[str, tuple[int, ...]]] = MappingProxyType(network.state_dict_layout())


def get_style(name: str) -> Style:
    """The registered style called ``name``."""
    try:
        return STYLES[name]
    except KeyError:
        raise WeightsError(f"Unknown style {name!r}; known styles: {', '.join(STYLES)}.") from None


def default_weights_dir() -> Path | None:
    """``ANIMEGAN_WEIGHTS_DIR`` if set: the one place this package reads it."""
    value = os.environ.get("ANIMEGAN_WEIGHTS_DIR")
    return Path(value).expanduser() if value else None


def default_cache_dir() -> Path:
    """``ANIMEGAN_CACHE_DIR`` if set, else the user cache dir (``platformdirs.user_cache_dir("animegan")``)."""
    value = os.environ.get("ANIMEGAN_CACHE_DIR")
    return Path(value).expanduser() if value else Path(platformdirs.user_cache_dir("animegan"))


def cached_weights_path(style: str, cache_dir: Path | None = None) -> Path:
    """Where ``fetch_weights`` keeps ``style``'s file: ``<cache_dir>/weights/<style>.pt``."""
    return (cache_dir if cache_dir is not None else default_cache_dir()) / "weights" / f"{style}.pt"


def resolve_weights(
    style: str, *, weights_dir: Path | None = None, cache_dir: Path | None = None, weights_path: Path | None = None
) -> Path:
    """Find ``style``'s weights file (see the module docstring for the order); never downloads."""
    spec = get_style(style)
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsError(f"Weights file {path} does not exist.")
        return path
    candidates = _candidates(style, weights_dir, cache_dir)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise WeightsError(f"No weights for style {style!r} (looked for {looked}). {how_to_supply(spec)}")


def how_to_supply(spec: Style) -> str:
    """One sentence telling a user how to make ``spec``'s weights available."""
    put = f"put {spec.name}.pt in the directory named by ANIMEGAN_WEIGHTS_DIR"
    if spec.url is None:
        return f"Style {spec.name!r} has no public download: {put}, or pass --weights FILE."
    return f"Run `animegan weights fetch {spec.name}` to download and verify it, or (offline) {put}."


def available_styles(*, weights_dir: Path | None = None, cache_dir: Path | None = None) -> dict[str, Path | None]:
    """Every registered style -> the weights file ``resolve_weights`` would use, or None."""
    found: dict[str, Path | None] = {}
    for name in STYLES:
        found[name] = next((c for c in _candidates(name, weights_dir, cache_dir) if c.is_file()), None)
    return found


def _candidates(style: str, weights_dir: Path | None, cache_dir: Path | None) -> list[Path]:
    directory = weights_dir if weights_dir is not None else default_weights_dir()
    candidates = [Path(directory).expanduser() / f"{style}.pt"] if directory is not None else []
    candidates.append(cached_weights_path(style, cache_dir))
    return candidates


def git_blob_sha1(path: Path) -> str:
    """The git blob id of a file (what ``git hash-object FILE`` prints)."""
    with Path(path).open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        digest = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(path: Path, style: str) -> None:
    """Check that ``path`` holds ``style``'s weights: its pinned digest, else a full structural check."""
    spec = get_style(style)
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist.")
    if spec.blob_sha1 is None:
        load_state_dict(path)
        return
    try:
        got = git_blob_sha1(path)
    except OSError as exc:
        raise WeightsError(f"Weights file {path} could not be read: {exc.strerror or exc}.") from exc
    if got != spec.blob_sha1:
        raise WeightsError(
            f"{path} is not the {style} weights: expected git blob id {spec.blob_sha1}, got {got} "
            f"({path.stat().st_size} bytes). The file is truncated, corrupt or another style; "
            f"fetch it again with `animegan weights fetch {style}`."
        )


# --- torch-free reader of the PyTorch zip checkpoint format -------------------------------------

_STORAGE_DTYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "FloatStorage": "f4",
        "DoubleStorage": "f8",
        "HalfStorage": "f2",
        "LongStorage": "i8",
        "IntStorage": "i4",
        "ShortStorage": "i2",
        "CharStorage": "i1",
        "ByteStorage": "u1",
        "BoolStorage": "?",
    }
)


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.<X>Storage`` in the pickle: an instance, so pickle cannot call it."""

    dtype: np.dtype[Any]


def _rebuild_tensor_v2(
    storage: object, offset: object, size: object, stride: object, *_ignored: object
) -> np.ndarray[Any, np.dtype[Any]]:
    """``torch._utils._rebuild_tensor_v2`` for numpy: a bounds-checked strided copy out of a storage."""
    if not isinstance(storage, np.ndarray) or not isinstance(offset, int) or offset < 0:
        raise pickle.UnpicklingError("malformed tensor record")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)):
        raise pickle.UnpicklingError("malformed tensor shape")
    if not all(isinstance(n, int) and n >= 0 for n in (*size, *stride)):
        raise pickle.UnpicklingError("malformed tensor shape")
    if 0 in size:
        return np.empty(size, dtype=storage.dtype.newbyteorder("="))
    # Zero strides could declare a huge broadcast view over a tiny storage; weights never do that.
    if math.prod(size) > storage.size:
        raise pickle.UnpicklingError("tensor has more elements than its storage")
    last = offset + sum((n - 1) * step for n, step in zip(size, stride, strict=True))
    if last >= storage.size:
        raise pickle.UnpicklingError("tensor reaches beyond its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(step * storage.itemsize for step in stride), writeable=False
    )
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")


def _rebuild_parameter(data: object, *_ignored: object) -> object:
    """``torch._utils._rebuild_parameter``: a parameter is just its tensor here."""
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that knows only what a plain state dict needs; every other global is refused."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._byteorder = "<" if byteorder == "little" else ">"
        self._storages: dict[str, np.ndarray[Any, np.dtype[Any]]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(np.dtype(self._byteorder + _STORAGE_DTYPES[name]))
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError("unsupported persistent record")
        _, storage_type, key, _location, numel = pid
        if not (isinstance(storage_type, _StorageType) and isinstance(key, str) and isinstance(numel, int)):
            raise pickle.UnpicklingError("malformed storage record")
        storage = self._storages.get(key)
        if storage is None:
            name = f"{self._prefix}data/{key}"
            expected = numel * storage_type.dtype.itemsize
            if self._archive.getinfo(name).file_size != expected:
                raise pickle.UnpicklingError(f"storage {key} does not hold the {expected} bytes it declares")
            storage = np.frombuffer(self._archive.read(name), dtype=storage_type.dtype)
            self._storages[key] = storage
        elif storage.dtype != storage_type.dtype:
            raise pickle.UnpicklingError(f"storage {key} is read with two dtypes")
        return storage


def load_state_dict(path: Path) -> dict[str, np.ndarray[Any, np.dtype[np.float32]]]:
    """Read a generator checkpoint without torch; refuses foreign globals and checks every tensor."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive)
            names = set(archive.namelist())
            byteorder = archive.read(f"{prefix}byteorder").decode() if f"{prefix}byteorder" in names else "little"
            pickled = archive.read(f"{prefix}data.pkl")
            loaded = _RestrictedUnpickler(pickled, archive, prefix, byteorder).load()
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"Refused to load {path}: {exc}; a generator weights file holds only tensors.") from exc
    except zipfile.BadZipFile as exc:
        raise WeightsError(
            f"{path} is not a PyTorch checkpoint in zip format (the file is truncated, corrupt, or not weights)."
        ) from exc
    except (OSError, KeyError, ValueError, EOFError, TypeError, IndexError, AttributeError, struct.error) as exc:
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in loaded.items()
    ):
        raise WeightsError(f"{path} does not hold a plain state dict of tensors.")
    check_state_dict(loaded, source=str(path))
    return dict(loaded)


def _archive_prefix(archive: zipfile.ZipFile) -> str:
    infos = archive.infolist()
    if sum(info.file_size for info in infos) > _MAX_ARCHIVE_BYTES:
        raise WeightsError(f"{archive.filename} is far larger than a generator checkpoint; refused.")
    pickles = [info for info in infos if info.filename.endswith("/data.pkl") and info.filename.count("/") == 1]
    if len(pickles) != 1:
        raise WeightsError(f"{archive.filename} is not a PyTorch checkpoint (no single <name>/data.pkl inside).")
    if pickles[0].file_size > _MAX_PICKLE_BYTES:
        raise WeightsError(f"{archive.filename} has an oversized data.pkl; refused.")
    return pickles[0].filename[: -len("data.pkl")]


def check_state_dict(state: Mapping[str, np.ndarray[Any, np.dtype[Any]]], *, source: str) -> None:
    """Raise WeightsError unless ``state`` has exactly the generator's 77 float32, finite tensors."""
    problems: list[str] = []
    missing = [key for key in EXPECTED_SHAPES if key not in state]
    unexpected = [key for key in state if key not in EXPECTED_SHAPES]
    if missing:
        problems.append(f"{len(missing)} missing keys ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
    misshapen = [
        f"{key} is {tuple(state[key].shape)}, expected {shape}"
        for key, shape in EXPECTED_SHAPES.items()
        if key in state and tuple(state[key].shape) != shape
    ]
    if misshapen:
        problems.append(f"{len(misshapen)} misshapen tensors ({_first(misshapen)})")
    wrong_dtype = [f"{key} is {value.dtype}" for key, value in state.items() if value.dtype != np.float32]
    if wrong_dtype:
        problems.append(f"expected float32 ({_first(wrong_dtype)})")
    elif not problems:
        non_finite = [key for key, value in state.items() if not np.isfinite(value).all()]
        if non_finite:
            problems.append(f"non-finite values in {_first(non_finite)}")
    if problems:
        raise WeightsError(f"{source} is not an AnimeGANv2 generator checkpoint: {'; '.join(problems)}.")


def _first(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ..."


def load_state_dict_torch(path: Path) -> dict[str, torch.Tensor]:
    """Reference path: ``torch.load(weights_only=True)`` on CPU, with the same structural checks."""
    import torch

    path = Path(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch.load raises many unrelated types for bad files; all mean "not loadable weights".
        raise WeightsError(f"{path} could not be loaded by torch ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise WeightsError(f"{path} does not hold a plain state dict of tensors.")
    check_state_dict({key: value.detach().numpy() for key, value in loaded.items()}, source=str(path))
    return dict(loaded)


# --- download (CLI only; never on the request path) ---------------------------------------------


def fetch_weights(
    style: str, cache_dir: Path | None = None, *, url: str | None = None, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``style``'s weights into the cache dir, verify them, and return the kept file.

    An already cached file that verifies is kept as is. ``url`` replaces the release URL (a
    mirror); the file is verified all the same. The download goes to a ``.part`` file beside
    the destination and is renamed into place only after it verified.
    """
    spec = get_style(style)
    source = url or spec.url
    if source is None:
        raise WeightsError(how_to_supply(spec))
    if urllib.parse.urlsplit(source).scheme not in ("http", "https"):
        raise WeightsError(f"Weights are downloaded over http or https only, not from {source!r}.")
    destination = cached_weights_path(style, cache_dir)
    if destination.is_file():
        try:
            verify_weights(destination, style)
        except WeightsError as exc:
            logger.warning("cached weights failed verification; downloading again", extra={"reason": str(exc)})
        else:
            return destination
    partial = destination.with_name(f"{destination.name}.{os.getpid()}.part")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        _download(source, partial, label=destination.name, progress=progress, timeout=timeout, spec=spec)
        _check_download(partial, spec, source)
        os.replace(partial, destination)
    except OSError as exc:
        raise WeightsError(f"Could not write the {style} weights to {destination.parent}: {exc}.") from exc
    finally:
        partial.unlink(missing_ok=True)
    return destination


def _download(source: str, target: Path, *, label: str, progress: bool, timeout: float, spec: Style) -> None:
    from tqdm import tqdm

    request = urllib.request.Request(source, headers={"User-Agent": "animegan-weights-fetch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, target.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress
            ) as bar:
                received = 0
                while chunk := response.read(1 << 16):
                    received += len(chunk)
                    if received > _MAX_DOWNLOAD_BYTES:
                        raise WeightsError(f"{source} sent more than {_MAX_DOWNLOAD_BYTES} bytes; not a weights file.")
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise WeightsError(
            f"Downloading the {spec.name} weights from {source} failed: HTTP {exc.code} {exc.reason}."
        ) from exc
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise WeightsError(
            f"Could not download the {spec.name} weights from {source} ({reason}). If this machine is offline, "
            f"download {spec.name}.pt elsewhere and put it in the directory named by ANIMEGAN_WEIGHTS_DIR "
            f"(or pass --weights FILE)."
        ) from exc


def _check_download(partial: Path, spec: Style, source: str) -> None:
    if spec.blob_sha1 is None:
        try:
            load_state_dict(partial)
        except WeightsError as exc:
            raise WeightsError(f"The file downloaded from {source} is not usable weights; not kept. {exc}") from exc
        return
    got = git_blob_sha1(partial)
    if got != spec.blob_sha1:
        raise WeightsError(
            f"The file downloaded from {source} is not the {spec.name} weights (expected git blob id "
            f"{spec.blob_sha1}, got {got}, {partial.stat().st_size} bytes); not kept."
        )
