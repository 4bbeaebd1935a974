"""Worker heartbeats: what each worker process announces in the ``workers`` hash."""

from __future__ import annotations

from pydantic import BaseModel

from jobstore.records import RawHash, now


class Heartbeat(BaseModel):
    """What a worker process tells the gateway about itself, refreshed every few seconds."""

    worker_id: str
    pid: int
    styles: list[str]
    threads: int
    expires_at: float


def live_heartbeats(raw: RawHash, at: float | None = None) -> list[Heartbeat]:
    """Heartbeats that have not expired, from an HGETALL of ``keys.WORKERS_KEY``."""
    moment = now() if at is None else at
    beats = []
    for value in raw.values():
        try:
            beat = Heartbeat.model_validate_json(value)
        except ValueError:
            continue
        if beat.expires_at > moment:
            beats.append(beat)
    return beats
