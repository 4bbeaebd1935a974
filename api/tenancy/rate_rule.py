"""A request rate as ANIMEGAN_RATE_LIMIT spells it: ``N/second``, ``N/minute``, ``N/hour``, ``N/day``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class RateRule:
    limit: int
    period_s: int

    @property
    def interval_us(self) -> int:
        return max(1, self.period_s * 1_000_000 // self.limit)

    def __str__(self) -> str:
        unit = next(name for name, seconds in _PERIODS.items() if seconds == self.period_s)
        return f"{self.limit}/{unit}"


def parse_rate(text: str) -> RateRule | None:
    """``"120/minute"`` -> RateRule; empty or ``off`` -> None; anything else raises ValueError."""
    if text.strip().lower() in {"", "off"}:
        return None
    found = _RATE.match(text)
    if found is None or int(found.group(1)) < 1:
        raise ValueError(f"{text!r} is not N/second, N/minute, N/hour or N/day (N >= 1), or 'off'")
    return RateRule(int(found.group(1)), _PERIODS[found.group(2).lower()])
