"""The studio in a real headless Chromium (Debian's), driven by Playwright: local login, create an
image, find it in the history. Skipped, with the reason, where no browser can be had."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxbot.core.requests import JobStatus
from tests.web.conftest import Studios

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags this machine needs (no sandbox as root, no GPU, and nothing reaching out to the network).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine: apt-get install chromium chromium-driver")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def test_create_an_image_and_find_it_in_the_history(studios: Studios, page: Any) -> None:
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(studios.local_url + "/")
    page.get_by_text("Local mode: you are the owner").wait_for()  # no login needed
    page.locator("#prompt textarea").fill("a small red boat on a calm lake --steps 1")
    page.locator("button#create").click()
    status = page.locator("#status")
    sync_api.expect(status).to_contain_text("Done:", timeout=STEP_TIMEOUT_MS)
    job_id = re.search(r"Done: (\w+)", status.inner_text()).group(1)  # type: ignore[union-attr]
    sync_api.expect(page.locator("#results img").first).to_be_visible()
    row = studios.call(studios.store.jobs.by_public_id(job_id))
    assert row is not None and row.status is JobStatus.DONE and row.params["steps"] == 1

    shot = os.environ.get("WEB_STUDIO_SCREENSHOT")
    if shot:  # how the README's picture is made
        Path(shot).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=shot, full_page=True)

    page.get_by_role("tab", name="History").click()
    history = page.locator("#history")
    sync_api.expect(history).to_contain_text(job_id, timeout=STEP_TIMEOUT_MS)
    sync_api.expect(history.locator("img").first).to_be_visible()
    history.get_by_text(job_id).first.click()
    sync_api.expect(page.locator("#job-view")).to_contain_text("small red boat")


def test_image_actions_from_create_and_from_a_job_opened_in_the_history(
    studios: Studios, page: Any
) -> None:
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(studios.local_url + "/")
    page.locator("#prompt textarea").fill("a kite over the dunes --steps 1")
    page.locator("button#create").click()
    status = page.locator("#status")
    sync_api.expect(status).to_contain_text("Done:", timeout=STEP_TIMEOUT_MS)
    parent = re.search(r"Done: (\w+)", status.inner_text()).group(1)  # type: ignore[union-attr]

    page.locator("button#create-vary1").click()
    details = page.locator("#details")
    sync_api.expect(details).to_contain_text(
        f"vary (strength 0.35) of {parent}", timeout=STEP_TIMEOUT_MS
    )
    sync_api.expect(status).to_contain_text("Done:")
    varied = re.search(r"Done: (\w+)", status.inner_text()).group(1)  # type: ignore[union-attr]
    assert varied != parent

    page.get_by_role("tab", name="History").click()
    page.locator("#open-id input, #open-id textarea").first.fill(parent)
    page.get_by_role("button", name="Open").click()
    sync_api.expect(page.locator("#job-view")).to_contain_text(
        "kite over the dunes", timeout=STEP_TIMEOUT_MS
    )
    page.locator("button#history-z2").click()  # the result shows on the Create tab
    sync_api.expect(details).to_contain_text(f"zoom out ×2 of {parent}", timeout=STEP_TIMEOUT_MS)
    sync_api.expect(status).to_contain_text("Done:")
    zoomed = re.search(r"Done: (\w+)", status.inner_text()).group(1)  # type: ignore[union-attr]
    row = studios.call(studios.store.jobs.by_public_id(zoomed))
    assert row is not None and row.operation == "zoom" and row.parent_id is not None
    parent_row = studios.call(studios.store.jobs.by_public_id(parent))
    assert row.parent_id == parent_row.id
