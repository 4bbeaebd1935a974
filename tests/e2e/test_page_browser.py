"""The web page in real headless Chromium against the whole stack as processes.

Redis (animegan.redis_server), the production Celery worker command with the real hayao weights
(the session's ``celery_worker``), and the production uvicorn command on a free port
(``spawn_module_api``). Chromium is Debian's (browsers cannot be
downloaded here), driven by Playwright through ``executable_path``. Screenshots go to
``test-artifacts/page/`` (git-ignored). A second, worker-less stack serves the refusals that need
no model (wrong type, undecodable, queue full).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from PIL import Image
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    FileChooser,
    Page,
    Playwright,
    Route,
    TimeoutError as PlaywrightTimeoutError,
    expect,
    sync_playwright,
)

from animegan.redis_server import RedisServer
from api.tenancy.keys import key_digest
from jobstore.keys import job_key
from jobstore.queue import QueueScripts, claim_call
from jobstore.records import ErrorCode, JobRecord, now
from jobstore.transitions import add_mark_failed

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "page"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Low enough that a real sample photo (railway_crossing.jpg, 736 KB) is over it.
MAX_UPLOAD_BYTES = 400_000
MAX_SIDE = 128
JOB_TIMEOUT_MS = 120_000

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@dataclass
class Stack:
    url: str
    redis_url: str


PAGE_SETTINGS = {
    "ANIMEGAN_MAX_SIDE": str(MAX_SIDE),
    "ANIMEGAN_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
    "ANIMEGAN_LOG_LEVEL": "WARNING",
}


@pytest.fixture(scope="module")
def stack(worker_redis_url: str, spawn_module_api: Callable[..., Any]) -> Stack:
    """The session's real worker (hayao, one process) and an API process of this module: the whole service."""
    api = spawn_module_api(worker_redis_url, **PAGE_SETTINGS)
    return Stack(url=api.base, redis_url=worker_redis_url)


@pytest.fixture(scope="module")
def workerless_stack(spawn_module_api: Callable[..., Any]) -> Iterator[Stack]:
    """A Redis of its own and the API only; the queue holds two jobs at most, and no worker ever takes them."""
    with RedisServer() as server:
        api = spawn_module_api(server.url, ANIMEGAN_MAX_QUEUE_DEPTH="2", **PAGE_SETTINGS)
        yield Stack(url=api.base, redis_url=server.url)
        api.stop()


@pytest.fixture(scope="module")
def keyed_stack(
    worker_redis_url: str, spawn_module_api: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> Stack:
    """The whole service behind an API key (the session's worker, an API process with a keys file)."""
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text(f"# the page test\npage-test {key_digest(PAGE_KEY)}\n")
    api = spawn_module_api(worker_redis_url, ANIMEGAN_API_KEYS_FILE=str(keys), **PAGE_SETTINGS)
    return Stack(url=api.base, redis_url=worker_redis_url)


PAGE_KEY = "agk_the-browser-tests-key"


@pytest.fixture
def idle_service(workerless_stack: Stack) -> Iterator[Stack]:
    """The worker-less stack, emptied after each test (a queued job would fill its queue)."""
    yield workerless_stack
    with redis.Redis.from_url(workerless_stack.redis_url) as client:
        client.flushdb()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@dataclass
class PageErrors:
    """Uncaught script errors and Content-Security-Policy refusals seen by one page."""

    messages: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.messages.append(message.text)


def _open(browser: Browser, width: int, height: int) -> tuple[Page, PageErrors]:
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = PageErrors()
    page.on("pageerror", lambda exc: errors.messages.append(str(exc)))
    page.on("console", errors.on_console)
    return page, errors


@pytest.fixture
def desktop(browser: Browser) -> Iterator[tuple[Page, PageErrors]]:
    page, errors = _open(browser, 1280, 900)
    yield page, errors
    page.context.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[tuple[Page, PageErrors]]:
    page, errors = _open(browser, 375, 740)
    yield page, errors
    page.context.close()


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _load(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#style")).to_be_enabled()
    expect(page.locator("#style")).to_have_value("hayao")


def _statuses(page: Page) -> list[str]:
    return list(page.evaluate("window.__statuses"))


# Records every text the status line shows, so a test can tell which states the page went through.
RECORD_STATUSES = """
window.__statuses = [];
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status");
  new MutationObserver(() => window.__statuses.push(status.textContent)).observe(status, {childList: true});
});
"""


# Records the text fields of every form the page sends with fetch().
RECORD_FORMS = """
window.__forms = [];
const sendForm = window.fetch;
window.fetch = (url, options) => {
  if (options && options.body instanceof FormData) {
    window.__forms.push(Object.fromEntries([...options.body].filter(([, v]) => typeof v === "string")));
  }
  return sendForm(url, options);
};
"""


# Drops a file on the page the way a file manager does: a drop event carrying a DataTransfer.
DROP_FILE = """([name, bytes]) => {
  const files = new DataTransfer();
  files.items.add(new File([new Uint8Array(bytes)], name, {type: "image/jpeg"}));
  const drop = document.getElementById("drop");
  drop.dispatchEvent(new DragEvent("drop", {dataTransfer: files, bubbles: true, cancelable: true}));
}"""


def _stylize(page: Page, photo: Path, *, drop: bool = False) -> None:
    """Pick (or drop) ``photo``, submit, and wait until the before/after comparison is shown."""
    if drop:
        page.evaluate(DROP_FILE, [photo.name, list(photo.read_bytes())])
    else:
        page.locator("#image").set_input_files(photo)
    expect(page.locator("#chosen-name")).to_have_text(photo.name)
    page.get_by_role("button", name="Make it anime").click()
    expect(page.locator("#result")).to_be_visible(timeout=JOB_TIMEOUT_MS)


def _natural_size(page: Page, selector: str) -> tuple[int, int]:
    width, height = page.eval_on_selector(selector, "img => [img.naturalWidth, img.naturalHeight]")
    return int(width), int(height)


def test_photo_is_stylized_followed_live_compared_and_downloaded(
    stack: Stack, desktop: tuple[Page, PageErrors], samples_dir: Path, tmp_path: Path
) -> None:
    page, errors = desktop
    followed: list[str] = []
    page.on("request", lambda r: followed.append(r.url) if re.search(r"/jobs/[\w-]+(/events)?$", r.url) else None)
    page.add_init_script(RECORD_STATUSES)
    _load(page, stack.url)
    _shot(page, "desktop-start")
    _stylize(page, samples_dir / "astronaut.jpg")
    # Followed live through the event stream, without falling back to polling.
    assert len(followed) == 1
    assert followed[0].endswith("/events")

    statuses = _statuses(page)
    assert statuses[0] == "Uploading your photo…"
    assert any(s.startswith("Waiting in the queue") or s == "Painting your picture…" for s in statuses), statuses
    assert statuses[-1] == "Done."
    after_w, after_h = _natural_size(page, "#after")
    assert 0 < max(after_w, after_h) <= MAX_SIDE
    assert _natural_size(page, "#before") == (512, 512)
    assert page.evaluate("document.activeElement.id") == "result-title"
    _shot(page, "desktop-result")

    # The divider is keyboard operable through the labelled range input.
    slider = page.get_by_label("Compare before and after")
    slider.focus()
    page.keyboard.press("Home")
    assert slider.input_value() == "0"
    page.keyboard.press("ArrowRight")
    assert slider.input_value() == "1"
    assert page.eval_on_selector("#compare", "el => el.style.getPropertyValue('--pos')") == "1%"

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download").click()
    download = download_info.value
    assert download.suggested_filename == "astronaut-hayao.png"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    with Image.open(target) as image:
        image.verify()
    with Image.open(target) as image:
        assert image.format == "PNG"
        assert image.size == (after_w, after_h)
    assert errors.messages == []


def test_phone_width_page_fits_and_completes(stack: Stack, phone: tuple[Page, PageErrors], samples_dir: Path) -> None:
    page, errors = phone
    _load(page, stack.url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    _shot(page, "phone-start")
    page.get_by_label("Output format").select_option("jpeg")
    _stylize(page, samples_dir / "chelsea.jpg")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert _natural_size(page, "#after")[0] > 0
    assert page.get_attribute("#download", "download") == "chelsea-hayao.jpg"
    _shot(page, "phone-result")
    assert errors.messages == []


def test_oversize_photo_is_refused_before_upload_naming_the_limit(
    stack: Stack, phone: tuple[Page, PageErrors], samples_dir: Path
) -> None:
    page, errors = phone
    uploads: list[str] = []
    page.on("request", lambda request: uploads.append(request.url) if request.method == "POST" else None)
    _load(page, stack.url)
    big = samples_dir / "railway_crossing.jpg"
    assert big.stat().st_size > MAX_UPLOAD_BYTES
    page.locator("#image").set_input_files(big)
    error = page.get_by_role("alert")
    expect(error).to_contain_text("too large")
    expect(error).to_contain_text("391 KB")
    page.get_by_role("button", name="Make it anime").click()
    expect(error).to_contain_text("too large")
    assert uploads == []
    _shot(page, "phone-too-large")
    assert errors.messages == []


def test_server_413_is_shown_in_plain_words(stack: Stack, desktop: tuple[Page, PageErrors], samples_dir: Path) -> None:
    """Without the page's own check (a proxy's lower limit looks the same), the server's 413 is shown."""
    page, errors = desktop

    def without_limit(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response, body=re.sub(r'data-max-upload-bytes="\d+"', "", response.text()))

    page.route(f"{stack.url}/", without_limit)
    _load(page, stack.url)
    page.locator("#image").set_input_files(samples_dir / "railway_crossing.jpg")
    page.get_by_role("button", name="Make it anime").click()
    error = page.get_by_role("alert")
    expect(error).to_contain_text("This photo is too large.")
    expect(error).to_contain_text(f"{MAX_UPLOAD_BYTES:,}-byte limit")
    assert page.evaluate("document.activeElement.id") == "error"
    expect(page.get_by_role("button", name="Make it anime")).to_be_enabled()
    assert errors.messages == []


def test_dropped_photo_is_followed_by_polling_when_events_fail(
    stack: Stack, desktop: tuple[Page, PageErrors], samples_dir: Path
) -> None:
    page, errors = desktop
    polls: list[str] = []
    page.route("**/jobs/*/events", lambda route: route.fulfill(status=503, body="events are off"))
    page.on("request", lambda r: polls.append(r.url) if re.search(r"/jobs/[\w-]+$", r.url) else None)
    _load(page, stack.url)
    _stylize(page, samples_dir / "coffee.jpg", drop=True)
    assert page.eval_on_selector("#image", "input => input.files[0].name") == "coffee.jpg"
    assert polls, "the page should have polled GET /jobs/{id}"
    assert _natural_size(page, "#after")[0] > 0
    assert errors.messages == []


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("notes.jpg", b"these are words, not pixels\n" * 20, "not a photo the service can read"),
        ("cut.jpg", b"truncate", "could not read this photo"),
    ],
)
def test_unusable_files_are_explained(
    idle_service: Stack,
    desktop: tuple[Page, PageErrors],
    samples_dir: Path,
    name: str,
    data: bytes,
    words: str,
) -> None:
    page, errors = desktop
    if data == b"truncate":
        data = (samples_dir / "astronaut.jpg").read_bytes()[:3000]
    _load(page, idle_service.url)
    page.locator("#image").set_input_files({"name": name, "mimeType": "image/jpeg", "buffer": data})
    page.get_by_role("button", name="Make it anime").click()
    expect(page.get_by_role("alert")).to_contain_text(words)
    expect(page.locator("#progress")).to_be_hidden()
    _shot(page, f"error-{name.split('.')[0]}")
    assert errors.messages == []


def test_full_queue_says_when_to_retry(
    idle_service: Stack, desktop: tuple[Page, PageErrors], samples_dir: Path
) -> None:
    page, errors = desktop
    _submit(idle_service, _jpeg(samples_dir / "chelsea.jpg", 1))
    _submit(idle_service, _jpeg(samples_dir / "chelsea.jpg", 2))  # jobs nobody takes fill the queue
    _load(page, idle_service.url)
    expect(page.locator("#style-description")).to_contain_text("No worker has this style loaded")
    page.locator("#image").set_input_files(samples_dir / "coffee.jpg")
    page.get_by_role("button", name="Make it anime").click()
    error = page.get_by_role("alert")
    expect(error).to_contain_text("The service is busy right now")
    expect(error).to_have_text(re.compile(r"try again in \d+ (seconds?|minutes?)\."))
    _shot(page, "error-queue-full")
    assert errors.messages == []


def test_keyboard_reaches_every_control_and_opens_the_file_picker(
    idle_service: Stack, phone: tuple[Page, PageErrors], samples_dir: Path
) -> None:
    page, errors = phone
    _load(page, idle_service.url)
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
    assert order == ["skip", "image", "style", "mode", "format", "submit"]
    for _ in range(4):
        page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.id") == "image"
    chooser = _open_file_chooser_by_keyboard(page)
    chooser.set_files(samples_dir / "chelsea.jpg")
    expect(page.locator("#chosen-name")).to_have_text("chelsea.jpg")
    assert errors.messages == []


def _open_file_chooser_by_keyboard(page: Page) -> FileChooser:
    """Space on the focused file input opens the picker. Under a loaded host Chromium has been
    seen to drop one such key press (no chooser at all), so a second press is allowed; the
    picker must still open from the keyboard."""
    for attempt in range(2):
        try:
            with page.expect_file_chooser(timeout=7_500) as chooser:
                page.keyboard.press("Space")
            return chooser.value
        except PlaywrightTimeoutError:
            if attempt == 1:
                raise
            assert page.evaluate("document.activeElement.id") == "image"
    raise AssertionError("unreachable")


def test_queue_position_and_state_change_live_then_failure_is_explained(
    idle_service: Stack, desktop: tuple[Page, PageErrors], samples_dir: Path
) -> None:
    """The job store is moved the way a worker moves it; the page follows every change."""
    page, errors = desktop
    ahead = _submit(idle_service, _jpeg(samples_dir / "chelsea.jpg", 3))
    _load(page, idle_service.url)
    page.locator("#image").set_input_files(samples_dir / "coffee.jpg")
    with page.expect_response(f"{idle_service.url}/stylize") as accepted:
        page.get_by_role("button", name="Make it anime").click()
    job_id = accepted.value.json()["id"]
    status = page.get_by_role("status")
    expect(status).to_have_text("Waiting in the queue: position 2 (1 job ahead of yours).")
    expect(page.locator('[aria-current="step"]')).to_have_text("In the queue")
    _shot(page, "desktop-queued")
    with redis.Redis.from_url(idle_service.redis_url) as client:
        _claim(client, ahead)
        expect(status).to_have_text("Waiting in the queue: you are next.")
        _claim(client, job_id)
        expect(status).to_have_text("Painting your picture…")
        expect(page.locator('[aria-current="step"]')).to_have_text("Painting")
        _move(client, job_id, lambda pipe, record, _: add_mark_failed(pipe, record, INVALID, "Truncated data."))
    error = page.get_by_role("alert")
    expect(error).to_contain_text("The picture could not be made.")
    expect(error).to_contain_text("Truncated data.")
    expect(page.get_by_role("button", name="Make it anime")).to_be_enabled()
    assert errors.messages == []


INVALID = ErrorCode.INVALID_IMAGE


def _claim(client: redis.Redis, expected: str) -> None:
    """What a worker's claim does: the next job in fair order starts running (the job store's CLAIM)."""
    keys, args = claim_call("test:1", now(), 60.0, 3)
    assert QueueScripts(client).claim(keys=keys, args=args) == [b"claimed", expected.encode()]


def _move(client: redis.Redis, job_id: str, change: Callable[[Any, JobRecord, float], None]) -> None:
    record = JobRecord.from_hash(client.hgetall(job_key(job_id)))
    pipe = client.pipeline()
    change(pipe, record, now())
    pipe.execute()


def _submit(stack: Stack, image: bytes) -> str:
    with httpx.Client(base_url=stack.url) as client:
        response = client.post("/stylize", files={"image": ("a.jpg", image, "image/jpeg")})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _jpeg(path: Path, variant: int) -> bytes:
    """A small JPEG of ``path``, made distinct by ``variant`` (identical uploads share one job)."""
    with Image.open(path) as image:
        small = image.convert("RGB").resize((64, 48))
    small.putpixel((0, 0), (variant * 40 % 256, 0, 0))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_page_asks_for_a_key_once_then_submits_with_it_and_follows_the_stream(
    keyed_stack: Stack, desktop: tuple[Page, PageErrors], samples_dir: Path, tmp_path: Path
) -> None:
    page, errors = desktop
    calls: list[tuple[str, str, str | None]] = []
    page.on("request", lambda r: calls.append((r.method, r.url, r.headers.get("authorization"))))
    page.add_init_script(RECORD_FORMS)
    page.goto(keyed_stack.url)
    key_form = page.locator("#key-form")
    expect(key_form).to_be_visible()  # GET /styles answered 401
    assert page.evaluate("document.activeElement.id") == "key"
    _shot(page, "desktop-key-asked")

    page.get_by_label("API key", exact=True).fill("agk_a-wrong-key")
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#key-message")).to_contain_text("That key was not accepted")
    expect(key_form).to_be_visible()
    page.get_by_label("API key", exact=True).fill(PAGE_KEY)
    page.get_by_role("button", name="Use this key").click()
    expect(key_form).to_be_hidden()
    expect(page.locator("#style")).to_have_value("hayao")
    assert page.evaluate("sessionStorage.getItem('animegan.apiKey')") == PAGE_KEY

    page.get_by_label("Kind of photo").select_option("portrait")
    # Pixels of its own: an identical upload from an earlier test would be answered from that job.
    portrait = tmp_path / "portrait.jpg"
    portrait.write_bytes(_jpeg(samples_dir / "astronaut.jpg", 7))
    _stylize(page, portrait)
    # Chromium hands Playwright no body for an upload made of a file: the page's fetch() shows the fields.
    assert page.evaluate("window.__forms") == [{"style": "hayao", "mode": "portrait"}]
    assert _natural_size(page, "#after")[0] > 0
    right = f"Bearer {PAGE_KEY}"
    after_key = calls[next(i for i, (_, _, auth) in enumerate(calls) if auth == right) :]
    service_calls = [c for c in after_key if c[1].startswith(keyed_stack.url) and "/static/" not in c[1]]
    service_calls = [c for c in service_calls if c[1] != f"{keyed_stack.url}/"]
    assert service_calls, calls
    assert all(auth == right for _, _, auth in service_calls), service_calls
    # Followed through the event stream read by fetch() (EventSource cannot send the key), not polling.
    followed = [url for _, url, _ in service_calls if re.search(r"/jobs/[\w-]+(/events)?$", url)]
    assert len(followed) == 1
    assert followed[0].endswith("/events")

    # The key is kept for the tab: a reload asks for nothing.
    page.reload()
    expect(page.locator("#style")).to_have_value("hayao")
    expect(key_form).to_be_hidden()
    _shot(page, "desktop-key-result")
    assert errors.messages == []


def test_a_clip_is_uploaded_followed_frame_by_frame_and_played(
    stack: Stack, desktop: tuple[Page, PageErrors], clip: Callable[..., bytes], tmp_path: Path
) -> None:
    from video.probe import probe

    page, errors = desktop
    page.add_init_script(RECORD_STATUSES)
    data = clip(frames=60, rate=Fraction(25), width=128, height=96)
    path = tmp_path / "holiday.mp4"
    path.write_bytes(data)
    _load(page, stack.url)
    page.locator("#image").set_input_files(path)
    expect(page.locator("#chosen-name")).to_have_text("holiday.mp4")
    expect(page.locator("#format")).to_be_hidden()  # a photo's options do not apply to a clip
    page.get_by_role("button", name="Make it anime").click()
    expect(page.locator("#after-video")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    statuses = _statuses(page)
    assert statuses[0] == "Uploading your clip…"
    assert any(s.startswith("Painting frames") or s.startswith("All frames painted") for s in statuses), statuses
    # The browser reads the stylized clip: its length is the clip's.
    duration = page.eval_on_selector("#after-video", "v => v.duration")
    assert abs(duration - float(probe(data).duration)) < 0.05
    _shot(page, "desktop-clip")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download").click()
    download = download_info.value
    assert download.suggested_filename == "holiday-hayao.mp4"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    assert probe(target.read_bytes()).frame_count == 60
    assert errors.messages == []
