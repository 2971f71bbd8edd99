"""Browser tests: headless Debian Chromium driven by Playwright (sync API) against pytest-django's
live server, which runs the whole Django app (SPA shell, static files, allauth, GraphQL) in a thread
of this process, so ``django.core.mail.outbox`` sees the emails it sends.

The web app must be built first (``npm --prefix frontend/app ci && npm --prefix frontend/app run build``).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core import mail
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "frontend" / "static" / "frontend" / "dist" / "manifest.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct-horse-battery-42"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright, per test module, so that its event loop is gone before other tests run.

    Playwright's sync API keeps an event loop running in this thread while it is started; the ORM
    (factories, the live server's transactional flush) and mail.outbox are used from plain
    synchronous code here, so Django's async-safety check must not apply meanwhile."""
    if not MANIFEST.exists():
        pytest.fail(
            f"The web app is not built ({MANIFEST.relative_to(ROOT)} is missing). Build it first:\n"
            "    npm --prefix frontend/app ci && npm --prefix frontend/app run build",
            pytrace=False,
        )
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium).", pytrace=False)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            yield p
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


@dataclass
class App:
    """The running app and the browser windows a test opened on it."""

    url: str
    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)
    js_errors: list[str] = field(default_factory=list)

    def new_page(self, viewport: dict[str, int] | None = None) -> Page:
        """A page in a fresh browser context: its own cookies, like a different person's browser."""
        context = self.browser.new_context(base_url=self.url, viewport=viewport or LAPTOP)  # type: ignore[arg-type]
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.js_errors.append(str(exc)))
        return page

    def path_of(self, link: str) -> str:
        """The path (and query) of an emailed link, to open on this server whatever host it names."""
        parts = urlsplit(link)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


def leave_evidence(request: pytest.FixtureRequest, app: App, tmp_path: Path, server_log: Path | None = None) -> None:
    """After a failed test: a picture of every page it had open (what the person would have seen),
    the server's log, the JavaScript errors. Nothing after a passing one."""
    if not request.node.stash.get(_CALL_FAILED, False):
        return
    folder = Path(os.environ.get("FLOWDECK_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for n, context in enumerate(app.contexts):
        for m, page in enumerate(context.pages):
            path = folder / f"{request.node.name}-failure-{n}-{m}.png"
            try:
                page.screenshot(path=str(path), full_page=True)
                print(f"screenshot of {page.url}: {path}")
            except Exception as exc:  # noqa: BLE001 (best effort while reporting a failure)
                print(f"could not take a screenshot of {page.url}: {exc}")
    if server_log is not None:
        print(f"server log: {server_log}")
    if app.js_errors:
        print("JavaScript errors:", *app.js_errors, sep="\n  ")


@pytest.fixture
def live_app(asgi_server, browser: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:  # type: ignore[no-untyped-def]
    """The app on the real ASGI server (websockets included: the ``live_server`` of ``app`` speaks
    WSGI only) that the test module's own ``asgi_server`` fixture runs."""
    if asgi_server.proc is None:  # a test took the server away and failed before restarting it
        asgi_server.start()
    instance = App(url=asgi_server.url, browser=browser)
    yield instance
    leave_evidence(request, instance, tmp_path, server_log=asgi_server.log_path)
    instance.close()


@pytest.fixture
def app(request: pytest.FixtureRequest, live_server, browser: Browser, settings, tmp_path: Path) -> Iterator[App]:  # type: ignore[no-untyped-def]
    settings.PUBLIC_URL = live_server.url
    instance = App(url=live_server.url, browser=browser)
    yield instance
    leave_evidence(request, instance, tmp_path)
    instance.close()


LINK = re.compile(r"https?://[^\s<>\"']+")


def emailed_link(to: str, contains: str) -> str:
    """The newest link containing ``contains`` in an email sent to ``to``."""
    for message in reversed(mail.outbox):
        if to.lower() not in [address.lower() for address in message.to]:
            continue
        bodies = [message.body] + [alt[0] for alt in getattr(message, "alternatives", [])]
        for body in bodies:
            for link in LINK.findall(body):
                if contains in link:
                    return link.rstrip(".,)")
    sent = [(m.to, m.subject) for m in mail.outbox]
    raise AssertionError(f"No email to {to} with a link containing {contains!r}; sent: {sent}")


def sign_up(page: Page, email: str, password: str = PASSWORD, workspace: str | None = None) -> None:
    """Fill and send the sign-up form and wait for the 'check your inbox' screen."""
    page.goto("/account/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    if workspace:
        page.get_by_label("Workspace name").fill(workspace)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()


def sign_up_verified(app: App, page: Page, email: str, password: str = PASSWORD, workspace: str | None = None) -> None:
    """Sign up and open the emailed verification link: signed in, in the first workspace."""
    sign_up(page, email, password, workspace)
    page.goto(app.path_of(emailed_link(email, "/account/verify-email/")))
    expect(page).to_have_url(re.compile(r"/w/[a-z0-9-]+/dashboard$"))


def log_in(page: Page, email: str, password: str = PASSWORD, *, succeed: bool = True) -> None:
    """Log in through the form; with ``succeed`` wait until a workspace page has opened."""
    page.goto("/account/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    if succeed:
        expect(page).to_have_url(re.compile(r"/w/[a-z0-9-]+/dashboard$"))


AXE = ROOT / "frontend" / "app" / "node_modules" / "axe-core" / "axe.min.js"
# Where page screenshots for a reviewer go (failure pictures go to the test's tmp dir instead).
SHOTS = Path(os.environ.get("FLOWDECK_SCREENSHOT_DIR") or ROOT / "var" / "screenshots") / "pages"


@functools.cache
def _axe_source() -> str:
    return AXE.read_text()


def axe_problems(page: Page) -> list[str]:
    """axe-core's serious and critical findings (WCAG 2 A/AA and best practice) on the page as it
    is now; axe-core comes from the web app's dev dependencies."""
    # Evaluated through the browser's debugging protocol, which the page's Content-Security-Policy
    # (no inline scripts) does not govern; a <script> tag would be blocked by it.
    page.evaluate(_axe_source())
    # resultTypes: only violations are read, so axe need not gather every node that passed.
    found = page.evaluate(
        """async () => {
            const tags = ["wcag2a", "wcag2aa", "wcag21aa", "best-practice"];
            const r = await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
            return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
                .map(v => `${v.impact}: ${v.id} (${v.help}) at ${v.nodes.slice(0, 3).map(n => n.target.join(" "))}`);
        }"""
    )
    return list(found)


def screenshot(page: Page, name: str) -> Path:
    """A full-page picture of ``page`` for a reviewer, as SHOTS/<name>.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_team(page: Page) -> None:
    """From any workspace page (a workspace opens on its dashboard), the Team page."""
    page.get_by_role("navigation", name="Workspace").get_by_role("link", name="Team", exact=True).click()
    expect(page).to_have_url(re.compile(r"/w/[a-z0-9-]+/team$"))
    expect(page.get_by_test_id("member-row").first).to_be_visible()


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))
