"""/docs and /redoc in real headless Chromium, with every request that would leave the machine aborted.

The gateway serves Swagger UI and ReDoc from files it ships (api/edge/docs.py). Debian's chromium is
driven by Playwright through ``executable_path`` (no browser download); each request to a host
other than loopback is recorded and aborted, and every Content-Security-Policy refusal or script
error is collected. Screenshots go to ``test-artifacts/docs/`` (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "docs"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass
class Watch:
    """What one page tried: requests to other hosts, CSP refusals and script errors."""

    left_the_machine: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or message.type == "error":
            self.problems.append(message.text)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def api_url(start_api: Callable[..., str], redis_url: str) -> str:
    return start_api(redis_url=redis_url)


@pytest.fixture
def watched(browser: Browser) -> Iterator[tuple[Page, Watch]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    watch = Watch()

    def guard(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            watch.left_the_machine.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.on("console", watch.on_console)
    page.on("pageerror", lambda exc: watch.problems.append(str(exc)))
    # Violations are also events in the page; record them in case one never reaches the console.
    page.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    yield page, watch
    context.close()


def _settle_and_check(page: Page, watch: Watch, name: str) -> None:
    page.wait_for_load_state("networkidle")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    assert watch.left_the_machine == []
    assert watch.problems == []
    assert page.evaluate("window.__violations") == []


def test_swagger_ui_renders_the_operations_offline(api_url: str, watched: tuple[Page, Watch]) -> None:
    page, watch = watched
    page.goto(f"{api_url}/docs")
    operation = page.locator(".opblock-post", has_text="/stylize")
    expect(operation).to_be_visible()
    expect(page.locator(".opblock-get", has_text="/jobs/{job_id}/result")).to_be_visible()
    # Expanding an operation renders its parameters and the multipart form from the schema.
    operation.locator(".opblock-summary").click()
    expect(operation.locator(".opblock-body")).to_contain_text("image")
    _settle_and_check(page, watch, "swagger-ui")


def test_redoc_renders_offline(api_url: str, watched: tuple[Page, Watch]) -> None:
    page, watch = watched
    page.goto(f"{api_url}/redoc")
    expect(page.get_by_role("heading", name=re.compile(r"^AnimeGAN"))).to_be_visible()
    expect(page.get_by_role("heading", name="Create Job")).to_be_visible()
    expect(page.locator("body")).to_contain_text("/stylize")
    # Its search runs in a Worker made from a blob: URL; it must work under the page's policy.
    page.get_by_placeholder("Search...").fill("result")
    expect(page.locator("[data-role='search:results']")).to_contain_text("Result", ignore_case=True)
    _settle_and_check(page, watch, "redoc")
