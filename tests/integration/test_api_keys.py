"""API keys, the per-client request rate, trusted proxies, the metrics port and the docs switch,
over real sockets against a real Redis (no worker: nothing here needs a job to run)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn

from animegan.redis_server import free_port
from api.config import ApiSettings
from api.tenancy.keys import key_digest
from api.tenancy.rate_limit import RATE_KEY_PREFIX

ApiFactory = Callable[..., str]
PROBLEM = "application/problem+json"
ROOT = Path(__file__).resolve().parents[2]
ALICE, BOB = "agk_alice-secret-key-for-tests", "agk_bob-secret-key-for-tests"


def _keys_file(path: Path, **keys: str) -> Path:
    lines = ["# name sha256(key)", *(f"{name} {key_digest(key)}" for name, key in keys.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == f"/problems/{slug}"


def test_a_key_is_required_checked_and_accepted(start_api: ApiFactory, redis_url: str, tmp_path: Path) -> None:
    base = start_api(redis_url=redis_url, api_keys_file=_keys_file(tmp_path / "keys", alice=ALICE))
    missing = httpx.get(f"{base}/styles")
    _problem(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == 'Bearer realm="animegan"'
    wrong = httpx.get(f"{base}/styles", headers=_bearer(ALICE + "x"))
    _problem(wrong, 401, "unauthorized")
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert httpx.get(f"{base}/styles", headers=_bearer(ALICE)).status_code == 200
    # Other schemes are not keys.
    _problem(httpx.get(f"{base}/styles", headers={"Authorization": f"Basic {ALICE}"}), 401, "unauthorized")
    # Every route is behind the key: the jobs, their event streams, the docs, /metrics on this port.
    for path in ("/jobs/nope", "/jobs/nope/events", "/docs", "/openapi.json", "/metrics"):
        _problem(httpx.get(f"{base}{path}"), 401, "unauthorized")
    _problem(httpx.post(f"{base}/stylize", files={"image": ("a.jpg", b"x" * 100)}), 401, "unauthorized")
    # The probes and the page (which asks for the key itself) are open.
    assert httpx.get(f"{base}/healthz").status_code == 200
    _problem(httpx.get(f"{base}/readyz"), 503, "not-ready")  # no worker here; but not 401
    assert httpx.get(f"{base}/").status_code == 200
    assert httpx.get(f"{base}/static/app.js").status_code == 200
    # So are the pages the problems' types point at: a refused client can read why.
    page = httpx.get(f"{base}{missing.json()['type']}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{base}/problems").status_code == 200
    assert httpx.get(f"{base}/jobs/nope", headers=_bearer(ALICE)).status_code == 404


def test_an_edited_keys_file_applies_without_a_restart(start_api: ApiFactory, redis_url: str, tmp_path: Path) -> None:
    keys = _keys_file(tmp_path / "keys", alice=ALICE)
    base = start_api(redis_url=redis_url, api_keys_file=keys)
    assert httpx.get(f"{base}/styles", headers=_bearer(ALICE)).status_code == 200
    assert httpx.get(f"{base}/styles", headers=_bearer(BOB)).status_code == 401

    _keys_file(keys, bob=BOB)  # alice revoked, bob added
    deadline = time.monotonic() + 10
    while httpx.get(f"{base}/styles", headers=_bearer(BOB)).status_code != 200:
        assert time.monotonic() < deadline, "the new key was never accepted"
        time.sleep(0.2)
    assert httpx.get(f"{base}/styles", headers=_bearer(ALICE)).status_code == 401

    # A broken edit keeps the keys in force (and only logs a warning).
    keys.write_text(f"bob {key_digest(BOB)}\nthis line is broken\n")
    time.sleep(1.5)
    assert httpx.get(f"{base}/styles", headers=_bearer(BOB)).status_code == 200


def test_rate_limit_is_shared_by_two_gateways_and_says_when_to_retry(
    start_api: ApiFactory, redis_url: str, tmp_path: Path
) -> None:
    keys = _keys_file(tmp_path / "keys", alice=ALICE, bob=BOB)
    first = start_api(redis_url=redis_url, api_keys_file=keys, rate_limit="4/minute")
    second = start_api(redis_url=redis_url, api_keys_file=keys, rate_limit="4/minute")
    for base in (first, second, first, second):
        assert httpx.get(f"{base}/styles", headers=_bearer(ALICE)).status_code == 200
    for base in (first, second):
        refused = httpx.get(f"{base}/styles", headers=_bearer(ALICE))
        _problem(refused, 429, "rate-limited")
        # One request per 15 s is the rate; the 4th was just now, so the next fits in 15 s at most.
        assert 1 <= int(refused.headers["retry-after"]) <= 15
    # The limit is per client: bob is untouched; the probes and /metrics never count.
    assert httpx.get(f"{first}/styles", headers=_bearer(BOB)).status_code == 200
    assert httpx.get(f"{first}/healthz").status_code == 200
    metrics = httpx.get(f"{first}/metrics", headers=_bearer(BOB)).text
    assert 'animegan_rejections_total{reason="rate_limited"}' in metrics
    assert 'animegan_client_rejections_total{client="alice",reason="rate_limited"}' in metrics
    with redis.Redis.from_url(redis_url) as client:
        assert client.exists(f"{RATE_KEY_PREFIX}key:alice")
        assert 0 < client.pttl(f"{RATE_KEY_PREFIX}key:alice") <= 60_000


def test_retry_after_is_honest(start_api: ApiFactory, redis_url: str) -> None:
    base = start_api(redis_url=redis_url, rate_limit="2/second")
    statuses = [httpx.get(f"{base}/styles").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = httpx.get(f"{base}/styles")
    wait = int(refused.headers["retry-after"])
    assert wait == 1
    time.sleep(wait)
    assert httpx.get(f"{base}/styles").status_code == 200


def test_without_redis_the_rate_limit_fails_open(start_api: ApiFactory) -> None:
    base = start_api(redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit="1/minute")
    # /styles answers without Redis (nothing loaded); the limiter lets every request through.
    assert [httpx.get(f"{base}/styles").status_code for _ in range(3)] == [200, 200, 200]
    metrics = httpx.get(f"{base}/metrics").text
    errors = [line for line in metrics.splitlines() if line.startswith("animegan_rate_limit_errors_total ")]
    assert errors
    assert float(errors[0].split()[1]) >= 1


@contextmanager
def _gateway_without_uvicorn_proxy_headers(**changes: object) -> Iterator[str]:
    """The gateway on a real socket as the production commands run it: uvicorn's own X-Forwarded-For
    handling off (it trusts 127.0.0.1 by default), so ANIMEGAN_TRUSTED_PROXIES alone decides."""
    from api.main import create_app

    settings = ApiSettings.model_validate({"styles": ["hayao"], "default_style": "hayao", **changes})
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", proxy_headers=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        assert thread.is_alive(), "the API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_forwarded_for_counts_only_from_a_trusted_proxy(redis_url: str) -> None:
    """The rate limit is per client, so it shows which address the gateway took for the client."""
    with _gateway_without_uvicorn_proxy_headers(redis_url=redis_url, rate_limit="1/minute") as untrusted:
        assert httpx.get(f"{untrusted}/styles", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
        # A made-up X-Forwarded-For from an untrusted peer changes nothing: still 127.0.0.1, now over its rate.
        assert httpx.get(f"{untrusted}/styles", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 429
    with redis.Redis.from_url(redis_url) as client:
        assert client.exists(f"{RATE_KEY_PREFIX}addr:127.0.0.1")
        client.flushdb()

    changes = {"redis_url": redis_url, "rate_limit": "1/minute", "trusted_proxies": ["127.0.0.0/8"]}
    with _gateway_without_uvicorn_proxy_headers(**changes) as trusted:
        spoofed_then_real = "10.9.9.9, 198.51.100.1"  # the client wrote the first entry; the proxy the second
        assert httpx.get(f"{trusted}/styles", headers={"X-Forwarded-For": spoofed_then_real}).status_code == 200
        assert httpx.get(f"{trusted}/styles", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200
        assert httpx.get(f"{trusted}/styles", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
        # Without the header the peer itself (the proxy) is the client.
        assert httpx.get(f"{trusted}/styles").status_code == 200
    with redis.Redis.from_url(redis_url) as client:
        assert client.exists(f"{RATE_KEY_PREFIX}addr:198.51.100.1", f"{RATE_KEY_PREFIX}addr:198.51.100.2") == 2
        assert client.exists(f"{RATE_KEY_PREFIX}addr:127.0.0.1")
        assert not client.exists(f"{RATE_KEY_PREFIX}addr:10.9.9.9")


def test_metrics_port_serves_metrics_without_a_key_and_the_public_port_does_not(
    start_api: ApiFactory, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    keys = _keys_file(tmp_path / "keys", alice=ALICE)
    base = start_api(redis_url=redis_url, api_metrics_port=port, api_metrics_host="127.0.0.1", api_keys_file=keys)
    assert httpx.get(f"{base}/styles", headers=_bearer(ALICE)).status_code == 200
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert 'animegan_http_requests_total{method="GET",route="/styles",status="200"}' in scraped.text
    assert "animegan_redis_up 1.0" in scraped.text
    assert httpx.get(f"http://127.0.0.1:{port}/styles").status_code == 404
    public = httpx.get(f"{base}/metrics", headers=_bearer(ALICE))
    assert public.status_code == 404
    assert public.headers["content-type"] == PROBLEM


def test_docs_can_be_turned_off(start_api: ApiFactory, redis_url: str) -> None:
    base = start_api(redis_url=redis_url, docs=False)
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui-bundle.js"):
        assert httpx.get(f"{base}{path}").status_code == 404, path
    assert httpx.get(f"{base}/styles").status_code == 200
    on = start_api(redis_url=redis_url)
    assert httpx.get(f"{on}/openapi.json").status_code == 200


def _animegan(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ANIMEGAN_")}
    environ.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "animegan", *args], capture_output=True, text=True, env=environ, timeout=60, check=False
    )


def test_keys_new_makes_a_key_that_opens_the_production_api(
    spawn_api: Callable[..., object], redis_url: str, tmp_path: Path
) -> None:
    made = _animegan("keys", "new", "carol")
    assert made.returncode == 0, made.stderr
    key, line = made.stdout.splitlines()
    assert key.startswith("agk_")
    assert line == f"carol {key_digest(key)}"
    keys = tmp_path / "keys"
    keys.write_text(f"# carol's laptop\n{line}\n")
    api = spawn_api(redis_url, ANIMEGAN_API_KEYS_FILE=str(keys))
    base: str = api.base  # type: ignore[attr-defined]
    assert httpx.get(f"{base}/styles", headers=_bearer(key)).status_code == 200
    assert httpx.get(f"{base}/styles").status_code == 401


def test_a_malformed_keys_file_stops_the_api_with_one_line_naming_the_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"alice {key_digest(ALICE)}\nbob not-a-digest\n")
    refused = _animegan("api", "--port", str(free_port()), ANIMEGAN_API_KEYS_FILE=str(keys))
    assert refused.returncode == 2
    message = refused.stderr.strip()
    assert "\n" not in message
    assert message.startswith("animegan api: invalid configuration: ANIMEGAN_API_KEYS_FILE:")
    assert f"{keys} line 2" in message


@pytest.mark.parametrize("value", ["lots/minute", "0/second", "5 per minute"])
def test_a_bad_rate_limit_stops_the_api(value: str) -> None:
    refused = _animegan("api", "--port", str(free_port()), ANIMEGAN_RATE_LIMIT=value)
    assert refused.returncode == 2
    assert "ANIMEGAN_RATE_LIMIT" in refused.stderr


def _stream_lasts(client: httpx.Client, path: str, revoke: Callable[[], None]) -> float:
    """Open the event stream at ``path``, revoke its key once the first event is in; seconds until it ends."""
    with client.stream("GET", path) as response:
        assert response.status_code == 200, response.read()
        lines = response.iter_lines()
        assert any(line.startswith("event: ") for line in lines)
        revoke()
        revoked_at = time.monotonic()
        for _ in lines:
            assert time.monotonic() - revoked_at < 8, "the stream outlived its revoked key"
    return time.monotonic() - revoked_at


def test_revoking_a_key_ends_its_open_event_streams_within_seconds(
    start_api: ApiFactory, redis_url: str, tmp_path: Path, photo: Callable[[], bytes]
) -> None:
    keys = _keys_file(tmp_path / "keys", alice=ALICE, bob=BOB)
    base = start_api(redis_url=redis_url, api_keys_file=keys)
    with httpx.Client(base_url=base, headers=_bearer(ALICE), timeout=20) as alice:
        job = alice.post("/stylize", files={"image": ("p.jpg", photo(), "image/jpeg")}).json()["id"]
        batch = alice.post("/batches", files={"image": ("p.jpg", photo(), "image/jpeg")}).json()["id"]
        # No worker listens: both stay queued, so only the revocation can end their streams.
        lasted = _stream_lasts(alice, f"/jobs/{job}/events", lambda: _keys_file(keys, bob=BOB))
        assert lasted < 4
        _problem(alice.get(f"/jobs/{job}/events"), 401, "unauthorized")
        _keys_file(keys, alice=ALICE, bob=BOB)
        time.sleep(1.2)
        lasted = _stream_lasts(alice, f"/batches/{batch}/events", lambda: _keys_file(keys, bob=BOB))
        assert lasted < 4
