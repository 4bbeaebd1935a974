"""The docs site, built once for the folder's tests: ``built_site`` (its folder) and ``site_text``.

The build is the real one (``mkdocs build --strict``, the command ``make lint`` runs) into a
temporary folder, so the generated reference pages are checked as a reader gets them.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).with_name("mkdocs")
    build = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    return site


@pytest.fixture(scope="session")
def site_text(built_site: Path) -> dict[str, str]:
    """Each page's visible text (tags dropped, entities decoded), by its path in the site."""
    pages = {}
    for path in sorted(built_site.rglob("*.html")):
        markup = re.sub(r"<(script|style)\b.*?</\1>", " ", path.read_text(), flags=re.DOTALL)
        pages[str(path.relative_to(built_site))] = html.unescape(re.sub(r"<[^>]+>", " ", markup))
    return pages
