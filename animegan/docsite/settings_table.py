"""Every ``ANIMEGAN_*`` setting, from the settings classes of the processes that read them.

A setting's variable is the class's ``env_prefix`` plus the field name, its type and bounds come
from the annotation and the field's constraints, its default from the field, and its description
from the docstring under the field (``use_attribute_docstrings``). A field without a description
stops the build: the reference never shows a blank.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from animegan.docsite.markdown_table import code, prose, table
from animegan.serve_options import ServeSettings
from api.config import ApiSettings
from worker.config import WorkerSettings

# Who reads which class: the table's "read by" column and its sections.
PROCESSES: dict[str, type[BaseSettings]] = {
    "api": ApiSettings,
    "worker": WorkerSettings,
    "animegan serve": ServeSettings,
}
SECTIONS: dict[tuple[str, ...], str] = {
    ("api", "worker"): "Gateway and workers (give both the same value)",
    ("api",): "Gateway",
    ("worker",): "Workers",
    ("animegan serve",): "Launcher (`animegan serve`)",
}
_SCALARS: dict[object, str] = {
    int: "integer",
    float: "number",
    str: "text",
    bool: "`true` or `false`",
    Path: "path",
    SecretStr: "secret text",
}
_LIST_ITEMS: dict[object, str] = {float: "numbers", int: "integers"}
_BOUNDS = ((annotated_types.Ge, "≥"), (annotated_types.Gt, ">"), (annotated_types.Le, "≤"), (annotated_types.Lt, "<"))


class UndocumentedSetting(Exception):
    """A settings field without a description (a docstring under the field)."""


@dataclass(frozen=True)
class Setting:
    variable: str
    kind: str
    default: str
    description: str
    readers: tuple[str, ...]
    rank: int = 0  # where the declaring class stands in the first reader's MRO (rows are sorted by it)


def describe_type(annotation: Any) -> str:
    """``int`` -> integer, ``Literal['a', 'b']`` -> `a` or `b`, ``list[str]`` -> comma-separated list ..."""
    origin = typing.get_origin(annotation)
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if origin is Literal:
        return ", ".join(code(arg) for arg in args[:-1]) + f" or {code(args[-1])}" if len(args) > 1 else code(args[0])
    if origin in (typing.Union, types.UnionType):
        return describe_type(args[0]) if len(args) == 1 else " or ".join(describe_type(arg) for arg in args)
    if origin is typing.Annotated:
        return describe_type(args[0])
    if origin is list:
        return "comma-separated " + _LIST_ITEMS.get(args[0], "list")
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def describe_bounds(field: FieldInfo) -> str:
    """The field's numeric constraints: ``≥ 1, ≤ 100``."""
    return ", ".join(
        f"{sign} {getattr(item, name)}"
        for item in field.metadata
        for (kind, sign), name in zip(_BOUNDS, ("ge", "gt", "le", "lt"), strict=True)
        if isinstance(item, kind)
    )


def describe_default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "*unset*"
    if isinstance(value, bool):
        return code(str(value).lower())
    if isinstance(value, list):
        return code(",".join(f"{item:g}" if isinstance(item, float) else str(item) for item in value)) or "*empty*"
    return code(value)


def settings(processes: dict[str, type[BaseSettings]] = PROCESSES) -> list[Setting]:
    """Every variable read by the processes, once, with the processes that read it (in field order)."""
    found: dict[str, Setting] = {}
    for reader, cls in processes.items():
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            variable = (prefix + name).upper()
            if not field.description:
                raise UndocumentedSetting(
                    f"{cls.__module__}.{cls.__name__}.{name} ({variable}) has no description: add a docstring "
                    f"under the field"
                )
            if variable in found:
                earlier = found[variable]
                found[variable] = Setting(**{**earlier.__dict__, "readers": (*earlier.readers, reader)})
                continue
            bounds = describe_bounds(field)
            kind = describe_type(field.annotation) + (f", {bounds}" if bounds else "")
            rank = next(i for i, base in enumerate(cls.__mro__) if name in getattr(base, "__annotations__", {}))
            found[variable] = Setting(variable, kind, describe_default(field), field.description, (reader,), rank)
    # Stable: field order within a class; in the shared table the common settings before the webhook ones.
    return sorted(found.values(), key=lambda setting: setting.rank)


def render(processes: dict[str, type[BaseSettings]] = PROCESSES) -> str:
    """One table per group of readers (shared first), each row a variable."""
    rows = settings(processes)
    groups = list(dict.fromkeys(row.readers for row in rows))
    groups.sort(key=lambda readers: (-len(readers), list(SECTIONS).index(readers) if readers in SECTIONS else 99))
    parts = []
    for readers in groups:
        title = SECTIONS.get(readers, " and ".join(readers))
        body = table(
            ["variable", "type", "default", "description"],
            [
                (
                    f'<span id="{row.variable.lower()}"></span>{code(row.variable)}',
                    row.kind,
                    row.default,
                    prose(row.description),
                )
                for row in rows
                if row.readers == readers
            ],
        )
        parts.append(f"### {title}\n\n{body}")
    return "\n".join(parts)
