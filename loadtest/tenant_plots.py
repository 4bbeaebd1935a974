"""The ``tenants`` picture: each tenant's job latency and queue wait over the run, with the steady tenant's bound."""

from __future__ import annotations

from typing import Any

from loadtest import plots  # sets the Agg backend before pyplot is imported
from loadtest.analysis import RunData, number

PLOT = "tenants.png"
COLOURS = {"flood": "tab:red", "steady": "tab:blue"}


def draw(data: RunData, result: dict[str, Any]) -> str:
    """``tenants.png`` in the run folder: latency (top) and the service's queue wait (bottom) per tenant."""
    t0 = data.window[0]
    fig, (top, bottom) = plots._figure(2)
    for tenant, colour in COLOURS.items():
        rows = [row for row in data.jobs if row.get("tenant") == tenant and row["outcome"] == "succeeded"]
        x = [float(row["finished_at"]) - t0 for row in rows]
        top.scatter(x, [float(row["latency_s"]) for row in rows], s=8, color=colour, label=tenant)
        queued = [(when, value) for when, row in zip(x, rows, strict=True) if (value := number(row.get("queue_s")))]
        bottom.scatter([p[0] for p in queued], [p[1] for p in queued], s=8, color=colour, label=tenant)
    if limits := result.get("bound"):
        top.axhline(limits["client_bound_s"], color="tab:blue", linestyle="--", linewidth=1, label="steady bound")
        bottom.axhline(limits["queue_bound_s"], color="tab:blue", linestyle="--", linewidth=1, label="(W + 1) x S")
    top.set_ylabel("job latency (s)")
    bottom.set_ylabel("queue wait (s)")
    top.legend(loc="upper left", fontsize="small")
    bottom.legend(loc="upper left", fontsize="small")
    top.set_title("each tenant's jobs, by finish time", fontsize="medium")
    plots._save(fig, data.folder / PLOT, bottom)
    return PLOT
