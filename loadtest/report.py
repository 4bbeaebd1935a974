"""The report of a load run: ``summary.json`` (the numbers) and ``report.md`` (the table, checks, plots, machine).

``python -m loadtest.report DIR`` renders them again from a run folder's raw files.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from loadtest import capacity, fairness, plots, soak
from loadtest.analysis import (
    RunData,
    host_summary,
    http_summary,
    job_summary,
    load_run,
    metrics_summary,
    process_summary,
    step_table,
)
from loadtest.checks import checks

MB = 1024 * 1024


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "absent"
    for unit, size in (("GB", 1024**3), ("MB", MB), ("kB", 1024)):
        if abs(value) >= size:
            return f"{value / size:.{1 if unit != 'kB' else 0}f} {unit}"
    return f"{value:.0f} B"


def fmt_s(value: float | None) -> str:
    return "absent" if value is None else f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def fmt_ms(value: float | None) -> str:
    return "absent" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def summarize(data: RunData) -> dict[str, Any]:
    """Every number the report shows, from the run folder's raw files."""
    start, end = data.window
    meta = data.meta
    procs = process_summary(data.processes, start, end)
    summary: dict[str, Any] = {
        "scenario": meta.get("scenario"),
        "seconds": end - start,
        "http": http_summary(data.requests),
        "jobs": job_summary(data.jobs, end - start),
        "processes": procs,
        "host": host_summary(data.host, start, end, procs["cpu_s"]),
        "metrics": metrics_summary(data),
        "temp": data.temp,
        "steps": None,
        "engine": engines(data.end_scrape),
    }
    if "soak" in meta.get("scenarios", []):
        summary["soak"] = soak.summarize(data)
    if "tenants" in meta.get("scenarios", []):
        summary["tenants"] = fairness.summarize(data.jobs, data.requests, meta, end - start)
    if meta.get("steps"):
        summary["steps"] = step_table(data.jobs, meta["steps"], meta["step_s"], meta.get("latency_factor", 4.0))
    summary["table"] = seed_table(summary, meta)
    summary["checks"] = checks(summary, meta)
    summary["passed"] = all(check["ok"] for check in summary["checks"])
    return summary


def peak_memory(summary: dict[str, Any]) -> tuple[float | None, str, str]:
    """Peak memory per inference: per-job peak RSS histogram when exported, else the worker process peak."""
    hist = summary["metrics"]["job_peak_rss"]
    if hist:
        value = hist["mean"]
        bound = fmt_bytes(hist["max_at_most"])
        text = f"{fmt_bytes(value)} mean per-job peak RSS (max ≤ {bound}, {hist['count']:.0f} jobs)"
        return value, text, "`animegan_job_peak_rss_bytes` histogram, observations made during the run"
    value = summary["processes"]["worker_peak_rss_bytes"]
    if value is None:
        return None, "absent", "no per-job histogram and no worker process observed"
    return value, f"{fmt_bytes(value)} worker process peak RSS", "psutil, highest RSS of any worker process"


def stable_concurrency(summary: dict[str, Any], meta: dict[str, Any]) -> tuple[int | None, str, str]:
    steps = summary["steps"]
    if steps:
        ramp = ",".join(str(row["users"]) for row in steps["rows"])
        value = steps["max_stable"]
        note = " (highest step tried)" if steps["all_stable"] else ""
        how = (
            f"step ramp {ramp} users, {meta['step_s']:.0f} s each; "
            f"stable = no failure, no 503, p95 ≤ {steps['factor']:g} x step-1 median"
        )
        return value, f"{value} users{note}", how
    users = meta.get("users")
    jobs, http = summary["jobs"], summary["http"]
    if "overload" in meta.get("scenarios", []):
        return None, "n/a (overload sheds by design)", "step mode runs with the classic scenario"
    if "tenants" in meta.get("scenarios", []):
        return None, "n/a (the flood tenant meets its quota by design)", "see the Tenants section"
    held = (
        jobs["succeeded"] > 0
        and jobs["succeeded"] == jobs["jobs"]
        and http["failures"] == 0
        and not jobs["shed_503"]
        and not jobs["shed_429"]
    )
    text = f"{users} users held (flat run)" if held else f"not held at {users} users (flat run)"
    return (users if held else None), text, "flat run: no step ramp (use the classic scenario for one)"


def seed_table(summary: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The seed article's table, measured: measure, value (number), text, how it was measured."""
    jobs, http, procs, metrics, temp = (summary[k] for k in ("jobs", "http", "processes", "metrics", "temp"))
    memory = peak_memory(summary)
    stable = stable_concurrency(summary, meta)
    disk_read = metrics["disk_read_bytes"] if metrics["disk_read_bytes"] is not None else procs["read_bytes"]
    disk_write = metrics["disk_write_bytes"] if metrics["disk_write_bytes"] is not None else procs["write_bytes"]
    if metrics["disk_write_bytes"] is not None:
        source = "`animegan_process_disk_*_bytes_total`, all stack processes"
        source += f"; psutil: read {fmt_bytes(procs['read_bytes'])}, write {fmt_bytes(procs['write_bytes'])}"
    else:
        source = "psutil (`/proc/<pid>/io`), all stack processes; the service exports no disk metric"
    temp_count = len(temp["stack_files"]) if temp.get("observed") else None
    temp_how = (
        f"new files in the stack's private TMPDIR, or held open by its processes under "
        f"{', '.join(temp.get('roots', []))}; not counted: {len(temp.get('metrics_files', []))} Prometheus "
        f"multiprocess file(s), {len(temp.get('unattributed', []))} new file(s) of other programs on the host"
        if temp.get("observed")
        else "not observed (external target)"
    )
    job_text = (
        f"{fmt_s(jobs['mean_s'])} (p50 {fmt_s(jobs['p50_s'])}, p95 {fmt_s(jobs['p95_s'])}; {jobs['succeeded']} jobs)"
    )
    http_text = f"{fmt_ms(http['mean_ms'])} (p95 {fmt_ms(http['p95_ms'])}; {http['requests']} requests)"
    return [
        {"measure": "Average response time, job (submit → result)", "value": jobs["mean_s"], "text": job_text,
         "how": "client clock per job, polling as the server's Retry-After says"},
        {"measure": "Average response time, HTTP", "value": http["mean_ms"], "text": http_text,
         "how": "every HTTP request of the run (submit, poll, result)"},
        {"measure": "Peak memory per inference", "value": memory[0], "text": memory[1], "how": memory[2]},
        {"measure": "Maximum stable concurrency", "value": stable[0], "text": stable[1], "how": stable[2]},
        {"measure": "Disk IO total (read / write)", "value": (disk_read or 0) + (disk_write or 0),
         "text": f"{fmt_bytes(disk_read)} / {fmt_bytes(disk_write)}", "how": source},
        {"measure": "Temporary files created", "value": temp_count,
         "text": "not observed" if temp_count is None else str(temp_count), "how": temp_how},
    ]  # fmt: skip


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]


def engines(scrape: str | None) -> list[str]:
    """ "precision on runtime" of every engine the workers loaded, from their animegan_worker_engine_info."""
    found = []
    for line in (scrape or "").splitlines():
        if line.startswith("animegan_worker_engine_info{") and not line.rstrip().endswith(" 0.0"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            found.append(f"{labels.get('precision', '?')} on {labels.get('runtime', '?')}")
    return sorted(set(found))


def _machine(meta: dict[str, Any], engine: list[str] | None = None) -> list[str]:
    machine = meta.get("machine", {})
    if not machine:
        return ["(not recorded)"]
    lines = [f"- Engine: {', '.join(engine)} (the workers' animegan_worker_engine_info)"] if engine else []
    versions = ", ".join(f"{name} {version}" for name, version in machine.get("versions", {}).items())
    flags = ", ".join(machine.get("cpu_flags", [])) or "none of avx2/fma/avx512"
    return [
        f"- CPU: {machine['cpu_model']} ({flags}); {machine['logical_cpus']} logical CPUs, "
        f"{machine['physical_cores']} cores, {machine['usable_cpus']} usable by this process",
        f"- Memory: {fmt_bytes(machine['memory_bytes'])}",
        f"- OS: {machine['os']}, kernel {machine['kernel']}; Python {machine['python']}",
        f"- Versions: {versions}",
        *lines,
    ]


def _host(host: dict[str, Any], procs: dict[str, Any], metrics: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    if not host:
        return ["(not enough host samples)"]
    cpus = meta.get("machine", {}).get("logical_cpus") or 1
    observers = procs["observer_cpu_s"] / (host["seconds"] * cpus) if host["seconds"] else 0.0
    busy = host["busy_share"] or 0.0
    if "stack_share" in host:
        other = max(0.0, busy - host["stack_share"] - observers)
        stack = host["stack_share"]
        split = f"the stack {stack:.0%}, load generator and runner {observers:.0%}, other programs {other:.0%}"
    else:
        rest = busy - observers
        split = f"load generator and runner {observers:.0%}, the rest (the service if local, others) {rest:.0%}"
    return [
        f"CPU busy {busy:.0%} of the machine: {split}. "
        f"iowait {host['iowait_s']:.1f} s ({host['iowait_share']:.1%} of CPU time; the service's metric says "
        f"{fmt_s(metrics['iowait_s'])}). Load average peak {host['load1_max']:.1f}."
    ]


def _soak(result: dict[str, Any]) -> list[str]:
    redis = result["redis"]
    tail_min = (result["window_s"] - result["tail_from_s"]) / 60
    lines = ["## Soak", ""]
    if result.get("capacity"):
        lines += [f"- Pace: {capacity.describe(result['capacity'])}; achieved {result['per_minute']:.1f} jobs/min."]
    lines += [
        f"- Redis used_memory: {fmt_bytes(redis['start_bytes'])} at the start, peak {fmt_bytes(redis['peak_bytes'])}, "
        f"{fmt_bytes(redis['end_bytes'])} at the end; plateau {fmt_bytes(redis['level'])} "
        + (
            f"reached after {redis['reached_after_s']:.0f} s, drift since then {redis['drift']:+.1%}"
            if redis["reached_after_s"] is not None and redis["drift"] is not None
            else "not reached"
        )
        + f" (band ±{redis['tolerance']:.0%}); maxmemory {fmt_bytes(redis['maxmemory_bytes'])}.",
        "",
        f"RSS per process (psutil). Growth over the last {tail_min:.0f} minutes: the least-squares line through "
        "the lowest RSS of each minute (what a process keeps between jobs), and through every sample:",
        "",
    ]
    rows = [
        [("worker child" if p["child"] else p["component"]), str(p["pid"]), fmt_bytes(p["start_rss_bytes"]),
         fmt_bytes(p["end_rss_bytes"]), fmt_bytes(p["peak_rss_bytes"]),
         _pct(p["tail_growth"]), _pct(p["tail_growth_all_samples"])]
        for p in result["processes"]
    ]  # fmt: skip
    header = ["process", "pid", "RSS at start", "RSS at end", "peak", "growth of floor", "growth, all samples"]
    lines += _table(header, rows)
    lines += ["", "Job latency over time (succeeded jobs, by finish time):", ""]
    rows = [
        [f"{row['from_s'] / 60:.0f}-{(row['from_s'] + soak.LATENCY_BIN_S) / 60:.0f} min", str(row["jobs"]),
         fmt_s(row["p50_s"]), fmt_s(row["p95_s"]), fmt_s(row["p99_s"])]
        for row in result["latency"]
    ]  # fmt: skip
    lines += _table(["finished", "jobs", "p50", "p95", "p99"], rows)
    lines += ["", *[f"![{name}]({name})" for name in soak_plot_names()]]
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2%}"


def soak_plot_names() -> tuple[str, ...]:
    from loadtest.soak_plots import PLOTS

    return PLOTS


def render(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """report.md"""
    http, jobs, procs, host, metrics = (summary[k] for k in ("http", "jobs", "processes", "host", "metrics"))
    lines = [
        f"# Load test: {meta.get('scenario')} ({meta.get('started', '')})",
        "",
        f"- Command: `{meta.get('command', '')}`",
        f"- Target: {meta.get('target', '')}",
        f"- Load: {meta.get('load', '')}; measured window {summary['seconds']:.0f} s",
        f"- Photos: {meta.get('photos') or 'generated in memory (no photo folder given)'}",
        *[
            f"- Stack setting `{key}={meta.get('settings', {}).get(key, '')}`: {why}"
            for key, why in sorted((meta.get("runner_settings") or {}).items())
        ],
        f"- Result: **{'all checks passed' if summary['passed'] else 'some checks FAILED'}**",
        "",
        "## Results",
        "",
    ]
    lines += _table(
        ["measure", "result", "how it was measured"], [[r["measure"], r["text"], r["how"]] for r in summary["table"]]
    )
    lines += ["", "## Checks", ""]
    lines += [f"- [{'x' if c['ok'] else ' '}] {c['check']}: {c['detail']}" for c in summary["checks"]]
    if summary["steps"]:
        lines += ["", "## Step ramp", ""]
        rows = [
            [str(r["users"]), str(r["jobs"]), str(r["succeeded"]), str(r["failed"]), str(r["shed_503"]),
             fmt_s(r["p50_s"]), fmt_s(r["p95_s"]), f"{r['per_minute']:.1f}" if r["per_minute"] is not None else "",
             "yes" if r["stable"] else f"no ({r['why_not']})"]
            for r in summary["steps"]["rows"]
        ]  # fmt: skip
        header = ["users", "jobs", "done", "failed", "503/429s", "p50", "p95", "jobs/min", "stable"]
        lines += _table(header, rows)
    if summary.get("soak"):
        lines += ["", *_soak(summary["soak"])]
    if summary.get("tenants"):
        lines += ["", *fairness.render(summary["tenants"])]
    lines += ["", "## Jobs", ""]
    lines += [
        f"{jobs['jobs']} jobs: {jobs['outcomes']}; {jobs['per_minute'] or 0:.1f} finished per minute; "
        f"{jobs['deduplicated']} answered from cache; {jobs['shed_503']} submissions shed with 503 and "
        f"{jobs['shed_429']} refused with 429 {http['problems_429'] or ''}, each retried after its Retry-After; "
        f"server-side mean (created → finished) {fmt_s(jobs['server_mean_s'])}; sizes {jobs['sizes']}.",
        "",
        "## HTTP by route",
        "",
    ]
    rows = [
        [route, str(r["requests"]), str(r["failures"]), ", ".join(f"{k}: {v}" for k, v in r["statuses"].items()),
         fmt_ms(r["mean_ms"]), fmt_ms(r["p95_ms"]), fmt_ms(r["max_ms"])]
        for route, r in http["routes"].items()
    ]  # fmt: skip
    lines += _table(["route", "requests", "failed", "statuses", "mean", "p95", "max"], rows)
    lines += ["", "## Processes (psutil)", ""]
    rows = [
        [p["component"], str(p["pid"]), p["name"], fmt_bytes(p["peak_rss_bytes"]), f"{p['cpu_s']:.1f} s",
         fmt_bytes(p["read_bytes"]), fmt_bytes(p["write_bytes"])]
        for p in procs["processes"]
    ]  # fmt: skip
    lines += _table(["component", "pid", "name", "peak RSS", "CPU", "disk read", "disk write"], rows)
    lines += [
        "",
        f"Peak of the stack's summed RSS: {fmt_bytes(procs['peak_rss_sum_bytes'])}. "
        f"Service metrics: peak RSS by component {metrics['rss_peak_by_component']}, "
        f"queue depth max {metrics['queue_depth_max']}, jobs running max {metrics['jobs_running_max']}, "
        f"Redis memory peak {fmt_bytes(metrics['redis_memory_peak'])}.",
        "",
        "## Host",
        "",
    ]
    lines += _host(host, procs, metrics, meta)
    lines += ["", "## Plots", ""]
    lines += [f"![{name}]({name})" for name in plots.PLOTS]
    lines += ["", "## Machine", "", *_machine(meta, summary.get("engine"))]
    if meta.get("settings"):
        notes = meta.get("runner_settings") or {}
        lines += ["", "## Service settings (environment)", ""]
        lines += [
            f"- `{key}={value}`" + (f" ({notes[key]})" if key in notes else "")
            for key, value in sorted(meta["settings"].items())
        ]
    absent = metrics["absent"]
    lines += [
        "",
        "## Notes",
        "",
        f"- Metrics absent from `/metrics` during this run: {', '.join(f'`{n}`' for n in absent) or 'none'}.",
        "- Raw data in this folder: `requests.csv`, `jobs.csv` (load generator), `metrics.csv`, `processes.csv`, "
        "`host.csv` (sampled about every second), `metrics-start.prom`, `metrics-end.prom`, `locust_*.csv`, "
        "`tempfiles.json`, `summary.json`, logs.",
    ]
    return "\n".join(lines) + "\n"


def write_report(folder: Path) -> dict[str, Any]:
    """Compute, plot and write ``summary.json`` and ``report.md`` into the run folder."""
    data = load_run(folder)
    summary = summarize(data)
    plots.draw_all(data)
    if summary.get("soak"):
        from loadtest import soak_plots

        soak_plots.draw_all(data, summary["soak"])
    if summary.get("tenants"):
        from loadtest import tenant_plots

        tenant_plots.draw(data, summary["tenants"])
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (folder / "report.md").write_text(render(summary, data.meta))
    return summary


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        sys.stderr.write("usage: python -m loadtest.report RUN_FOLDER\n")
        return 2
    return 0 if write_report(Path(args[0]))["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
