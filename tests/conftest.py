"""Suite-wide fixtures and markers: a test's marker comes from its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SAMPLES_DIR = SHARED / "samples"
WEIGHTS_DIR = SHARED / "weights"
HAYAO_WEIGHTS = WEIGHTS_DIR / "hayao.pt"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in {"unit", "integration", "e2e"}:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    assert SAMPLES_DIR.is_dir(), f"sample photos expected in {SAMPLES_DIR}"
    return SAMPLES_DIR


@pytest.fixture(scope="session")
def hayao_weights() -> Path:
    assert HAYAO_WEIGHTS.is_file(), f"real weights expected at {HAYAO_WEIGHTS}"
    return HAYAO_WEIGHTS
