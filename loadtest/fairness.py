"""The ``tenants`` scenario judged: each tenant's jobs side by side, and the steady tenant against round-robin.

Two clients with keys of their own load the service: "flood" holds its whole per-client quota (it is always
refused with some 429s), "steady" sends one job at a time. Under round-robin the steady tenant's job waits
for at most the jobs running when it arrives (one per worker) and one flood job the round may put before it:
``W + 1`` service times even if nothing ran in parallel (with W workers in parallel it is nearer 1 to 2), then
runs for one: its latency is bounded by ``(W + 2) x S`` (S: its own median service time, started → finished).
The client sees the end at its next poll, whose hint is at most ``⌈2 S / W⌉`` s (its job is never further
back than second), and spends its own HTTP time (upload, download) on top. Without the round-robin
(first come, first served) it would wait behind the flood's whole quota: about ``quota x S / W``.

Inputs are the rows of ``jobs.csv`` and ``requests.csv`` (their ``tenant`` column); out come JSON-ready dicts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from loadtest.analysis import number, percentile

TENANTS = ("flood", "steady")


def _values(rows: list[dict[str, str]], key: str) -> list[float]:
    return [value for row in rows if (value := number(row.get(key))) is not None]


def tenant_jobs(jobs: list[dict[str, str]], tenant: str, seconds: float) -> dict[str, Any]:
    """One tenant's jobs: latency (client clock, from its first attempt), queue wait, service time, 429s."""
    group = [row for row in jobs if row.get("tenant") == tenant]
    done = [row for row in group if row["outcome"] == "succeeded"]
    latency = _values(done, "latency_s")
    # From acceptance: without the time spent refused (429/503) before it, as the service saw the job.
    accepted = [total - (number(row.get("waited_s")) or 0.0) for row in done if (total := number(row["latency_s"]))]
    queue, service = _values(done, "queue_s"), _values(done, "service_s") or _values(done, "inference_s")
    return {
        "jobs": len(group),
        "succeeded": len(done),
        "outcomes": dict(sorted(Counter(row["outcome"] for row in group).items())),
        "p50_s": percentile(latency, 50),
        "p95_s": percentile(latency, 95),
        "max_s": max(latency, default=None),
        "accepted_p95_s": percentile(accepted, 95),
        "queue_p50_s": percentile(queue, 50),
        "queue_p95_s": percentile(queue, 95),
        "queue_max_s": max(queue, default=None),
        "service_p50_s": percentile(service, 50),
        "server_p95_s": percentile(_values(done, "server_latency_s"), 95),
        "shed_429": sum(int(number(row.get("shed_429")) or 0) for row in group),
        "shed_503": sum(int(number(row.get("shed_503")) or 0) for row in group),
        "per_minute": len(done) * 60 / seconds if seconds > 0 else None,
    }


def tenant_requests(requests: list[dict[str, str]], tenant: str) -> dict[str, Any]:
    """One tenant's HTTP answers: 429s (by problem), those without Retry-After, 5xx, its own HTTP time."""
    rows = [row for row in requests if row.get("tenant") == tenant and row["method"] != "JOB"]
    refused = [row for row in rows if row["status"] == "429"]

    def p95_ms(method: str, name: str) -> float:
        times = [float(row["response_ms"]) for row in rows if (row["method"], row["name"]) == (method, name)]
        return percentile(times, 95) or 0.0

    return {
        "requests": len(rows),
        "status_429": len(refused),
        "problems_429": dict(sorted(Counter(row.get("problem") or "?" for row in refused).items())),
        "without_retry_after": sum(1 for row in refused if not row.get("retry_after")),
        "server_errors": sum(1 for row in rows if int(row["status"]) >= 500),
        "http_s": (p95_ms("POST", "/stylize") + p95_ms("GET", "/jobs/[id]/result")) / 1000,
    }


def bound(service_s: float | None, workers: int | None, http_s: float = 0.0) -> dict[str, Any] | None:
    """The round-robin bounds on the steady tenant (see the module docstring); None when S or W is unknown."""
    if not service_s or not workers:
        return None
    poll_s = max(1.0, math.ceil(2 * service_s / workers))
    server_s = (workers + 2) * service_s
    return {
        "service_s": service_s,
        "workers": workers,
        "queue_bound_s": (workers + 1) * service_s,
        "server_bound_s": server_s,
        "poll_s": poll_s,
        "http_s": http_s,
        "client_bound_s": server_s + poll_s + http_s,
    }


def summarize(
    jobs: list[dict[str, str]], requests: list[dict[str, str]], meta: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """Both tenants side by side, the steady tenant's bound, and what first come, first served would give."""
    tenants = {name: {**tenant_jobs(jobs, name, seconds), **tenant_requests(requests, name)} for name in TENANTS}
    steady = tenants["steady"]
    workers = meta.get("workers_live")
    limits = bound(steady["service_p50_s"], workers, steady["http_s"])
    quota = meta.get("quota")
    fifo = (quota * limits["service_s"] / workers + limits["service_s"]) if limits and quota else None
    return {"tenants": tenants, "bound": limits, "workers": workers, "quota": quota, "fifo_latency_s": fifo}


def checks(result: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """What ``tenants`` must show: steady within its bounds, the flood held at its quota, no 5xx.

    That every 429 carried Retry-After is checked for every run (``loadtest.checks``).
    """
    flood, steady, limits = result["tenants"]["flood"], result["tenants"]["steady"], result["bound"]
    found: list[tuple[str, bool, str]] = []
    if limits is None:
        why = f"service time {steady['service_p50_s']}, workers {result['workers']} (from /readyz)"
        found.append(("the steady tenant's latency within the round-robin bound", False, f"cannot judge: {why}"))
    else:
        p95, queue = steady["p95_s"], steady["queue_p95_s"]
        found.append(
            (
                "the steady tenant's p95 latency within (W + 2) x S + poll + HTTP",
                p95 is not None and p95 <= limits["client_bound_s"],
                f"p95 {_s(p95)} ≤ {_s(limits['client_bound_s'])} (W {limits['workers']}, S {_s(limits['service_s'])})",
            )
        )
        found.append(
            (
                "the steady tenant's p95 queue wait within (W + 1) x S",
                queue is not None and queue <= limits["queue_bound_s"],
                f"p95 {_s(queue)} ≤ {_s(limits['queue_bound_s'])}",
            )
        )
    found += [
        ("both tenants finished jobs", flood["succeeded"] > 0 and steady["succeeded"] > 0,
         f"flood {flood['succeeded']}, steady {steady['succeeded']}"),
        ("the flood tenant was held at its quota (429 client-quota)", flood["problems_429"].get("client-quota", 0) > 0,
         f"{flood['status_429']} 429s: {flood['problems_429'] or 'none'}"),
        ("no 5xx for either tenant", flood["server_errors"] + steady["server_errors"] == 0,
         f"flood {flood['server_errors']}, steady {steady['server_errors']}"),
    ]  # fmt: skip
    return found


def _s(value: float | None) -> str:
    return "absent" if value is None else f"{value:.2f} s"


def render(result: dict[str, Any]) -> list[str]:
    """The Tenants section of report.md."""
    tenants, limits = result["tenants"], result["bound"]
    measures: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("jobs done", lambda t: str(t["succeeded"])),
        ("jobs per minute", lambda t: "absent" if t["per_minute"] is None else f"{t['per_minute']:.1f}"),
        ("latency p50 (submit → result)", lambda t: _s(t["p50_s"])),
        ("latency p95", lambda t: _s(t["p95_s"])),
        ("latency max", lambda t: _s(t["max_s"])),
        ("latency p95 from acceptance", lambda t: _s(t["accepted_p95_s"])),
        ("queue wait p50 / p95 / max (server)",
         lambda t: f"{_s(t['queue_p50_s'])} / {_s(t['queue_p95_s'])} / {_s(t['queue_max_s'])}"),
        ("service time p50 (started → finished)", lambda t: _s(t["service_p50_s"])),
        ("429s seen (problem types)",
         lambda t: f"{t['status_429']} ({', '.join(f'{k}: {v}' for k, v in t['problems_429'].items()) or 'none'})"),
        ("5xx", lambda t: str(t["server_errors"])),
    ]  # fmt: skip
    header = ["measure", *TENANTS]
    rows = [[label, *(show(tenants[name]) for name in TENANTS)] for label, show in measures]
    lines = ["## Tenants", "", "| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", *_bound_text(result, limits), "", "![tenants](tenants.png)"]
    return lines


def _bound_text(result: dict[str, Any], limits: dict[str, Any] | None) -> list[str]:
    if limits is None:
        return ["The round-robin bound could not be computed (no service time or no worker count)."]
    w, s = limits["workers"], limits["service_s"]
    fifo = result["fifo_latency_s"]
    fifo_text = (
        f" First come, first served, the steady job would wait behind the flood's quota of {result['quota']}: "
        f"about {result['quota']} x S / W + S = {_s(fifo)}."
        if fifo is not None
        else ""
    )
    return [
        f"The bound: W = {w} worker processes (`/readyz`), S = {_s(s)} (the steady tenant's median service time, "
        "started → finished). Under round-robin a steady job waits for at most the W jobs running when it "
        f"arrives and one flood job the round may put before it, (W + 1) x S = {_s(limits['queue_bound_s'])} even "
        f"if nothing overlapped, then runs for S: (W + 2) x S = {_s(limits['server_bound_s'])}. The client sees the "
        f"end at its next poll (hints ≤ ⌈2 S / W⌉, at least 1 s: {limits['poll_s']:.0f} s) and spends its own "
        f"HTTP time (p95 upload + download {_s(limits['http_s'])}): bound {_s(limits['client_bound_s'])}.{fifo_text}",
    ]
