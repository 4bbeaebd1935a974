"""Worker logging: the shared formatters (``telemetry.logs``) with the ``job_id`` context."""

from __future__ import annotations

from telemetry.logs import configure, job_id_var


def configure_logging(log_format: str, level: str) -> None:
    """The worker's logging (Celery's own hijacking is turned off)."""
    configure(
        log_format,
        level,
        context=job_id_var,
        text_format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
