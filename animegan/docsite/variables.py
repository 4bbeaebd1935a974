"""Environment variables outside the settings classes: the compose file's, read from ``.env.example``.

``.env.example`` documents every variable the compose stack passes on: a comment block, then the
variable with its default (commented out), under ``# --- Section ---`` headings. Its variables that
are no service setting (the image, the stack, Redis, Prometheus, Grafana) are rendered here, by
section; the settings have their own table. ``mentioned_variables`` lists every ``ANIMEGAN_*`` name
the code, the compose file and ``.env.example`` use, which the tests require the site to show.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from animegan.docsite.markdown_table import code, prose, table
from animegan.docsite.settings_table import settings

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
_SECTION = re.compile(r"^#\s*---\s*(.+?)\s*-*\s*$")
_ASSIGNMENT = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
VARIABLE = re.compile(r"\bANIMEGAN_[A-Z0-9_]*[A-Z0-9]\b")
# Where the service's own variables are read or passed: code, scripts, the image and the chart.
CODE_SUFFIXES = {".py", ".sh", ".yml", ".yaml", ".tpl", ".example"}
CODE_NAMES = {"Dockerfile", "Makefile"}
NOT_CODE = {"tests", "docs", ".git", ".venv", ".venv-latest", "test-artifacts", "loadtest-reports"}


@dataclass(frozen=True)
class EnvEntry:
    section: str
    variable: str
    default: str
    description: str


def env_entries(path: Path = ENV_EXAMPLE) -> list[EnvEntry]:
    """Every variable of ``.env.example`` with the comment block above it and its section."""
    entries: list[EnvEntry] = []
    section, after_assignment = "", False
    comment: list[str] = []
    for line in path.read_text().splitlines():
        heading, assignment = _SECTION.match(line), _ASSIGNMENT.match(line)
        if heading:
            section, comment = heading.group(1), []
        elif assignment:
            entries.append(EnvEntry(section, assignment.group(1), assignment.group(2), " ".join(comment)))
            after_assignment = True
        elif line.startswith("#"):
            comment = [] if after_assignment else comment
            comment.append(line.lstrip("#").strip())
            after_assignment = False
        else:
            comment, after_assignment = [], False
    return entries


def render() -> str:
    """The variables of ``.env.example`` that no settings class reads, one table per section."""
    known = {setting.variable for setting in settings()}
    entries = [entry for entry in env_entries() if entry.variable not in known]
    parts = []
    for section in dict.fromkeys(entry.section for entry in entries):
        # Variables under one comment block share their row (one description for the group).
        groups: dict[str, list[EnvEntry]] = {}
        for entry in entries:
            if entry.section == section:
                groups.setdefault(entry.description, []).append(entry)
        rows = [
            (
                "<br>".join(code(entry.variable) for entry in group),
                "<br>".join(code(entry.default) if entry.default else "*empty*" for entry in group),
                prose(description),
            )
            for description, group in groups.items()
        ]
        parts.append(f"### {section}\n\n" + table(["variable", "default", "meaning"], rows))
    return "\n".join(parts)


def _code_files(root: Path) -> list[Path]:
    found = []
    for folder, subfolders, names in os.walk(root):
        # Pruned in place: never walk a virtualenv, git's objects, the tests or the docs themselves.
        subfolders[:] = [name for name in subfolders if name not in NOT_CODE and not name.startswith(".venv")]
        found += [Path(folder, name) for name in names if Path(name).suffix in CODE_SUFFIXES or name in CODE_NAMES]
    return found


def mentioned_variables(root: Path = ROOT) -> dict[str, set[str]]:
    """Every ``ANIMEGAN_*`` name used in the code, the compose file and ``.env.example``: name -> files."""
    found: dict[str, set[str]] = {}
    for path in _code_files(root):
        for name in VARIABLE.findall(path.read_text(errors="replace")):
            found.setdefault(name, set()).add(str(path.relative_to(root)))
    return found
