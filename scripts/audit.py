"""Dependency audit: pip-audit over the installed environment must find no known vulnerability.

pip-audit asks a vulnerability service (PyPI's per-release JSON API by default) about every
installed distribution. A package it could not look up is reported as skipped, and pip-audit then
still says "No known vulnerabilities found" and exits 0: that is not a pass. This script fails,
naming the cause, when any installed package (other than this project itself) went unaudited,
when the service cannot be reached at all, or when a vulnerability is known.

Run with `make audit`. It needs the vulnerability service; it is not part of `make test` because
the machines that run the project's CI reach no vulnerability service.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Not on PyPI by design: this project, installed in development mode.
OWN_DISTRIBUTIONS = {"animegan"}
SERVICE = "pypi"


def main() -> int:
    command = [sys.executable, "-m", "pip_audit", "--local", "--format", "json", "--progress-spinner", "off"]
    command += ["--vulnerability-service", SERVICE, "--timeout", "30", "--desc", "off"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(
            f"pip-audit gave no report (exit {done.returncode}); the audit did not run:\n{done.stderr[-2000:]}\n"
        )
        return 1
    dependencies = report["dependencies"]
    skipped = [d for d in dependencies if "skip_reason" in d and d["name"] not in OWN_DISTRIBUTIONS]
    if skipped:
        sys.stderr.write(
            f"pip-audit could not audit {len(skipped)} of {len(dependencies)} installed distributions with the "
            f"{SERVICE!r} vulnerability service, e.g. {skipped[0]['skip_reason']!r}: the service did not answer "
            "(PyPI's per-release JSON API, https://pypi.org/pypi/<name>/<version>/json, must be reachable). "
            "An audit that skipped them is not a pass.\n"
        )
        return 1
    vulnerable = {f"{d['name']} {d['version']}": [v["id"] for v in d["vulns"]] for d in dependencies if d.get("vulns")}
    if vulnerable:
        sys.stderr.write(f"known vulnerabilities in installed packages: {vulnerable}\n")
        return 1
    sys.stdout.write(f"audited {len(dependencies)} distributions: no known vulnerability\n")
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
