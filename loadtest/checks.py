"""What must hold for a run's scenarios, from its summary: the runner exits non-zero when one does not."""

from __future__ import annotations

from typing import Any

from loadtest import fairness, soak


def checks(summary: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """What must hold for the run's scenarios; the runner exits non-zero when one does not."""
    http, jobs, temp = summary["http"], summary["jobs"], summary["temp"]
    scenarios = meta.get("scenarios", [])
    found = [
        ("no 5xx (other than 503 shedding)", http["server_errors"] == 0, f"{http['server_errors']} seen"),
        ("no connection errors", http["connection_errors"] == 0, f"{http['connection_errors']} seen"),
        ("no failed request", http["failures"] == 0, f"{http['failures']} failed of {http['requests']}"),
        ("jobs completed", jobs["succeeded"] > 0, f"{jobs['succeeded']} succeeded"),
        ("no failed or timed-out job", jobs["succeeded"] == jobs["jobs"], f"outcomes {jobs['outcomes']}"),
        ("every 503 carried Retry-After", http["shed_503_without_retry_after"] == 0, f"{http['shed_503']} 503s"),
        ("every 429 carried Retry-After", http["refused_429_without_retry_after"] == 0,
         f"{http['refused_429']} 429s {http['problems_429'] or ''}".rstrip()),
    ]  # fmt: skip
    if "locust_exit_code" in meta:
        code = meta["locust_exit_code"]
        found.append(("the load generator ended normally", code == 0, f"locust exit code {code} (see locust.log)"))
    if "overload" in scenarios:
        shed = http["shed_503"] + http["refused_429"]
        detail = f"{http['shed_503']} 503s, {http['refused_429']} 429s"
        found.append(("the burst was shed (503, or 429 from a per-client limit)", shed > 0, detail))
    if "dedup" in scenarios:
        found.append(("duplicates answered from cache", jobs["deduplicated"] > 0, f"{jobs['deduplicated']} hits"))
    if "badinput" in scenarios:
        bad = {route: r for route, r in http["routes"].items() if route.startswith("POST /stylize [")}
        wrong = sum(r["failures"] for r in bad.values())
        found.append(
            (
                "every bad input got a 4xx",
                bool(bad) and wrong == 0,
                f"{wrong} of {sum(r['requests'] for r in bad.values())} not 4xx",
            )
        )
    if summary.get("soak"):
        found += soak.checks(summary["soak"])
    if summary.get("tenants"):
        found += fairness.checks(summary["tenants"])
    if temp.get("observed"):
        count = len(temp["stack_files"])
        found.append(("no temporary file created by the stack", count == 0, f"{count} created"))
    return [{"check": name, "ok": bool(ok), "detail": detail} for name, ok, detail in found]
