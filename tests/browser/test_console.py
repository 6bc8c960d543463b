"""The console in a real headless Chromium against a real `lsd serve` with traffic in it: every page loads
without a console error, links lead from the overview to a function, a variant and an inference, human feedback
submitted in the page is stored, and with auth on a visitor is refused without a key and signs in and out.
A screenshot of each page is written under the test's tmp_path (and under $LSD_CONSOLE_SCREENSHOTS when set:
docs/images/console-*.png come from here)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from lsd.auth import new_key
from lsd.store import keys
from tests.browser.console_data import AUTH, CONFIG, Traffic, send_traffic
from tests.support.gateway import Daemon, Daemons
from tests.support.polling import count, eventually

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"),
]


class Pages:
    """One browser page that records console errors and uncaught exceptions, and screenshots by name."""

    def __init__(self, page: Any, base_url: str, folder: Path) -> None:
        self.page = page
        self.base_url = base_url
        self.folder = folder
        self.errors: list[str] = []
        page.on("console", lambda message: self._console(message))
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def goto(self, path: str) -> Any:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        return response

    def shot(self, name: str) -> None:
        path = self.folder / f"console-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        extra = os.environ.get("LSD_CONSOLE_SCREENSHOTS")
        if extra:
            shutil.copy(path, Path(extra) / path.name)


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def start(daemons: Daemons, database_url: str, config: str) -> tuple[Daemon, Traffic]:
    daemon = daemons.start(config, database_url)
    with httpx.Client(base_url=daemon.base_url, headers=headers_for(database_url, config)) as client:
        return daemon, send_traffic(client, database_url)


def headers_for(database_url: str, config: str) -> dict[str, str]:
    if AUTH not in config:
        return {}
    return {"authorization": f"Bearer {make_key(database_url, None)}"}


def variant_of(database_url: str, inference_id: object) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT variant_name FROM chat_inferences WHERE id = %s", (inference_id,)).fetchone()
    assert row is not None
    return str(row[0])


def make_key(database_url: str, role: str | None) -> str:
    made = new_key()
    with psycopg.connect(database_url, autocommit=True) as conn:
        keys.insert_key(
            conn,
            made.public_id,
            made.secret_sha256,
            description=f"browser {role}",
            organization=None,
            workspace=None,
            console_role=role,
        )
    return made.token


def test_every_page_links_and_feedback(browser: Any, daemons: Daemons, database_url: str, tmp_path: Path) -> None:
    daemon, traffic = start(daemons, database_url, CONFIG)
    pages = Pages(browser.new_page(viewport={"width": 1360, "height": 900}), daemon.base_url, tmp_path)
    page = pages.page
    pages.goto("/ui/")
    assert page.locator(".tile b").first.inner_text() == "7"
    assert page.locator("svg.chart").count() >= 4
    pages.shot("overview")
    # overview -> function -> variant -> inference
    page.get_by_role("link", name="chat", exact=True).first.click()
    page.wait_for_url("**/ui/functions/chat**")
    assert page.locator("tr.variant-row").count() == 2
    pages.shot("function")
    variant = variant_of(database_url, traffic.inference_ids[0])
    page.locator("tr.variant-row a", has_text=variant).first.click()
    page.wait_for_url(f"**/ui/inferences?function=chat&variant={variant}")
    rows = page.locator("table.list tbody tr")
    assert rows.count() >= 1
    pages.shot("inferences")
    page.locator("table.list tbody tr a.mono").first.click()
    page.wait_for_url("**/ui/inferences/*")
    inference_id = page.url.rsplit("/", 1)[1]
    assert page.locator("tr.attempt").count() == 1
    assert "echo: hello" in page.locator("#output").inner_text()
    # Human feedback through the form: a boolean false on `thumbs`, stored as POST /feedback stores it.
    page.select_option("#feedback-kind", "boolean")
    page.select_option("#feedback-metric", "thumbs")
    page.fill("#feedback-value", "false")
    page.click("#feedback-submit")
    page.wait_for_url(f"**/ui/inferences/{inference_id}?added=*")
    stored = (
        "SELECT count(*) FROM boolean_metric_feedback WHERE target_id = %s AND metric_name = 'thumbs' AND NOT value"
    )
    assert eventually(lambda: count(database_url, stored, inference_id), 10) == 1
    page.reload()
    assert page.locator("tr.feedback-row", has_text="thumbs").count() >= 1
    page.locator("details.raw summary").first.click()
    pages.shot("inference")
    # The other pages, each with its screenshot.
    pages.goto(f"/ui/inferences/{traffic.failing_inference_id}")
    assert page.locator("tr.attempt.status-error").count() == 1
    pages.shot("inference-fallback")
    for name, path in (
        ("functions", "/ui/functions"),
        ("episode", f"/ui/episodes/{traffic.episode_id}"),
        ("evaluations", "/ui/evaluations"),
        ("datasets", "/ui/datasets"),
        ("batches", "/ui/batches"),
        ("keys", "/ui/keys"),
        ("overview-30d", "/ui/?range=30d"),
    ):
        pages.goto(path)
        pages.shot(name)
    # A key made in the console is shown once.
    pages.goto("/ui/keys")
    page.fill("#create-key input[name=description]", "made in a browser")
    page.click("#create-key button")
    assert page.locator("#new-key").inner_text().startswith("sk-lsd-")
    page.reload()  # does not post the form again: no second key, no secret shown again
    assert page.locator("#new-key").count() == 0
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM api_keys WHERE description = 'made in a browser'").fetchone() == (1,)
    pages.goto("/ui/keys")
    assert page.locator("#new-key").count() == 0
    # On a phone (400 px) the links wrap in a row of their own under the brand, not in a tall column beside it.
    narrow = browser.new_page(viewport={"width": 400, "height": 800})
    narrow.goto(f"{daemon.base_url}/ui/functions")
    header, nav = narrow.locator("header").bounding_box(), narrow.locator("header nav").bounding_box()
    assert header is not None and nav is not None
    assert header["height"] < 160 and nav["width"] > 300, (header, nav)
    narrow.close()
    assert pages.errors == []
    assert sorted(p.name for p in tmp_path.glob("console-*.png")) == sorted(
        f"console-{n}.png"
        for n in (
            "overview",
            "function",
            "inferences",
            "inference",
            "inference-fallback",
            "functions",
            "episode",
            "evaluations",
            "datasets",
            "batches",
            "keys",
            "overview-30d",
        )
    )


def test_sign_in_and_out_with_auth_on(browser: Any, daemons: Daemons, database_url: str, tmp_path: Path) -> None:
    daemon, _ = start(daemons, database_url, CONFIG + AUTH)
    reader = make_key(database_url, "read-only")
    api_only = make_key(database_url, None)
    pages = Pages(browser.new_page(), daemon.base_url, tmp_path)
    page = pages.page
    # Refused without a key: the API answers 401, the console sends the visitor to sign in.
    assert httpx.get(f"{daemon.base_url}/v1/evaluations/runs").status_code == 401
    page.goto(daemon.base_url + "/ui/functions")
    page.wait_for_url("**/ui/login?next=*")
    pages.shot("login")
    for key in ("sk-lsd-wrong", api_only):
        page.fill("input[name=key]", key)
        page.click("button[type=submit]")
        assert "cannot sign in" in page.locator(".error").inner_text()
    # A refused sign-in is answered 401, which Chromium reports on its console; nothing else may be there.
    assert (
        pages.errors
        == ["console: Failed to load resource: the server responded with a status of 401 (Unauthorized)"] * 2
    )
    pages.errors.clear()
    page.fill("input[name=key]", reader)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/functions")
    assert "read-only" in page.locator(".who").inner_text()
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["lsd_console_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and reader not in session["value"]
    pages.goto("/ui/keys")
    assert page.locator("#create-key").count() == 0
    pages.shot("keys-read-only")
    page.click("#sign-out")
    page.wait_for_url("**/ui/login")
    page.goto(daemon.base_url + "/ui/")
    page.wait_for_url("**/ui/login?next=*")
    assert pages.errors == []
