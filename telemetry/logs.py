"""Process logging for the gateway and the workers: text or JSON lines carrying a context id.

Each process has one context variable (the workers' ``job_id_var``, the gateway's
``request_id_var``); ``configure`` installs one stderr handler that stamps it on every record.
Stdlib only.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from typing import Any

job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is kept.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class ContextFilter(logging.Filter):
    """Sets ``record.<field>`` from the context variable unless the call passed it in ``extra``."""

    def __init__(self, var: contextvars.ContextVar[str | None]) -> None:
        super().__init__()
        self.var = var

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, self.var.name, None) is None:
            setattr(record, self.var.name, self.var.get())
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, field: str) -> None:
        super().__init__()
        self.field = field

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            self.field: getattr(record, self.field, None),
        }
        entry.update(_extras(record, self.field))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str, field: str) -> None:
        super().__init__(fmt)
        self.field = field

    def format(self, record: logging.LogRecord) -> str:
        value = getattr(record, self.field, None)
        pairs = [f"{self.field}={value}"] * bool(value)
        pairs += [f"{k}={v}" for k, v in _extras(record, self.field).items()]
        return f"{super().format(record)} {' '.join(pairs)}".rstrip()


def _extras(record: logging.LogRecord, field: str) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES and k != field}


def configure(log_format: str, level: str, *, context: contextvars.ContextVar[str | None], text_format: str) -> None:
    """Install one stderr handler on the root logger, replacing any other."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter(context))
    if log_format == "json":
        handler.setFormatter(JsonFormatter(context.name))
    else:
        handler.setFormatter(TextFormatter(text_format, context.name))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
