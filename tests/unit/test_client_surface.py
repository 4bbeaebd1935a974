"""The two clients are one: ``Client`` is generated from ``AsyncClient``, and their surfaces match.

``scripts/unasync.py`` writes animegan/client/sync_client.py from async_client.py; the committed
file must be what it writes. Whatever the generator does, the public surfaces are compared here on
their own: the same names, signatures and docstrings, async words aside.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from animegan.client import AsyncClient, Client

ROOT = Path(__file__).resolve().parents[2]

# How an async name or sentence reads in the blocking client.
AS_SYNC = (
    (r"\bAsync(?=[A-Z])", ""),
    (r"\basync with\b", "with"),
    (r"\baclose\b", "close"),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
)


def as_sync(text: str) -> str:
    for pattern, replacement in AS_SYNC:
        text = re.sub(pattern, replacement, text)
    return text


def load_unasync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync_script", ROOT / "scripts" / "unasync.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


HOOKS = {"__init__", "__enter__", "__exit__", "__aenter__", "__aexit__"}


def public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    """The methods a caller uses, under their blocking names (the context-manager hooks included)."""
    members = vars(cls).items()
    return {as_sync(n): m for n, m in members if callable(m) and (not n.startswith("_") or n in HOOKS)}


def sync_doc(member: object) -> str | None:
    doc = inspect.getdoc(member)
    return None if doc is None else as_sync(doc)


def test_the_committed_sync_client_is_what_the_generator_writes() -> None:
    unasync = load_unasync()
    assert (ROOT / "animegan" / "client" / "sync_client.py").read_text() == unasync.generate()


def test_the_check_fails_on_a_hand_edited_sync_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unasync = load_unasync()
    edited = tmp_path / "sync_client.py"
    edited.write_text(unasync.generate().replace("def close(self)", "def shut(self)"))
    monkeypatch.setattr(unasync, "SYNC_TARGET", edited)
    assert unasync.main(["--check"]) == 1
    edited.write_text(unasync.generate())
    assert unasync.main(["--check"]) == 0


def test_the_generator_refuses_an_async_construct_it_cannot_rewrite() -> None:
    unasync = load_unasync()
    assert unasync.unasync("async def f():\n    await g()\n") == unasync.HEADER + "def f():\n    g()\n"
    with pytest.raises(unasync.UnasyncError, match=r"line 3 .*'anyio'"):
        unasync.unasync("async def f():\n    await g()\n    anyio.Event()\n")


def test_both_clients_have_the_same_public_methods() -> None:
    sync, async_ = public_methods(Client), public_methods(AsyncClient)
    assert sorted(sync) == sorted(async_)
    assert {"submit", "job", "result", "wait", "stylize", "batch", "batch_status", "wait_batch"} <= set(sync)
    assert {"batch_results", "close", "__enter__", "__exit__"} <= set(sync)


def test_every_async_method_is_a_coroutine_and_no_blocking_one_is() -> None:
    for name, method in public_methods(AsyncClient).items():
        assert inspect.iscoroutinefunction(method) == (name != "__init__"), name
    for name, method in public_methods(Client).items():
        assert not inspect.iscoroutinefunction(method), name


def test_both_clients_have_the_same_signatures() -> None:
    async_ = public_methods(AsyncClient)
    for name, method in public_methods(Client).items():
        assert str(inspect.signature(method)) == as_sync(str(inspect.signature(async_[name]))), name


def test_both_clients_have_the_same_docstrings() -> None:
    assert inspect.getdoc(Client) == sync_doc(AsyncClient)
    async_ = public_methods(AsyncClient)
    documented = 0
    for name, method in public_methods(Client).items():
        assert inspect.getdoc(method) == sync_doc(async_[name]), name
        documented += inspect.getdoc(method) is not None
    assert documented >= 9


def test_both_clients_hold_the_same_public_attributes() -> None:
    sync = Client("http://127.0.0.1:1", api_key="k", retry_for_s=5)
    async_ = AsyncClient("http://127.0.0.1:1", api_key="k", retry_for_s=5)
    try:
        assert sorted(k for k in vars(sync) if not k.startswith("_")) == ["options"]
        assert sorted(k for k in vars(async_) if not k.startswith("_")) == ["options"]
        assert sync.options == async_.options
    finally:
        sync.close()
        anyio.run(async_.aclose)
