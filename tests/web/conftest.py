"""Web UI tests: TestClient tests of the routes, and browser tests (Debian's chromium driven by
Playwright) against the real single-machine stack (`stack`, from the system tests)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from functions.api.app import create_app
from tests.system.conftest import REPO, TOKEN, stack  # noqa: F401  (the `stack` fixture)

OUT = REPO / "test-output" / "web"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--ignore-certificate-errors",
]
ALICE = "r8_web-alice-token-0123456789abcdef"
BOB = "r8_web-bob-token-0123456789abcdef"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


class Web:
    """A browser-like TestClient session (cookies kept) with helpers."""

    def __init__(self, app, base: str):
        self.client = TestClient(app, base_url=base)

    def get(self, path: str, **kw):
        return self.client.get(path, **kw)

    def post(self, path: str, data=None, *, csrf: bool = True, from_page: str | None = None, **kw):
        data = dict(data or {})
        if csrf:
            data["csrf"] = csrf_of(self.get(from_page or "/").text)  # one token per session
        return self.client.post(path, data=data, follow_redirects=False, **kw)

    def sign_in(self, token: str):
        r = self.post("/signin", {"token": token, "next": "/dashboard"}, from_page="/signin")
        assert r.status_code == 303, r.text
        return r


@pytest.fixture
def web_app(services):
    services.accounts.ensure_account("alice")
    services.accounts.issue_token("alice", ALICE)
    services.accounts.ensure_account("bob")
    services.accounts.issue_token("bob", BOB)
    return create_app(services)


@pytest.fixture
def web(web_app, settings):
    return Web(web_app, settings.public_url)


@pytest.fixture
def other(web_app, settings):
    return Web(web_app, settings.public_url)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shot(request):
    """shot(page): save a full-page screenshot as test-output/web/<test name>.png."""
    OUT.mkdir(parents=True, exist_ok=True)

    def take(page, suffix: str = "") -> Path:
        path = OUT / f"{request.node.name}{suffix}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def new_page(browser, **kw):
    context = browser.new_context(
        ignore_https_errors=True, viewport=kw.pop("viewport", {"width": 1280, "height": 900}), **kw
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    return context, page
