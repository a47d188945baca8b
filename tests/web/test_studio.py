"""The studio in local mode (127.0.0.1, no OAuth: the owner) through its real HTTP API."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from fluxbot.core.requests import JobStatus
from tests.web.conftest import Studios

PROMPT = "a red fox in fresh snow"


@pytest.fixture(scope="module")
def made(client: Client) -> dict[str, Any]:
    """One job of two images, made through the Create tab's endpoint; every update kept."""
    job = client.submit(PROMPT, "", "your default", "7", "2", "2", False, api_name="/create")
    updates = list(job)
    status, _preview, gallery, details, job_id = job.outputs()[-1]
    return {
        "updates": updates,
        "status": status,
        "gallery": gallery,
        "details": details,
        "job_id": job_id,
    }


def test_create_streams_progress_then_the_stored_images(
    studios: Studios, made: dict[str, Any]
) -> None:
    texts = [update[0] for update in made["updates"]]
    assert any("step" in text and "of 2" in text for text in texts), texts
    assert made["status"] == f"Done: `{made['job_id']}`"
    assert [item["caption"] for item in made["gallery"]] == ["seed 7", "seed 8"]
    assert "Seeds** 7, 8" in made["details"] and PROMPT in made["details"]
    row = studios.call(studios.store.jobs.by_public_id(made["job_id"]))
    assert row is not None and row.status is JobStatus.DONE and row.user_id == 0
    assert [image.seed for image in row.images] == [7, 8]
    for item, image in zip(made["gallery"], row.images, strict=True):
        assert Path(item["image"]).read_bytes() == studios.store.image_path(image.path).read_bytes()


def test_bad_input_gets_the_shared_message_and_makes_no_job(
    studios: Studios, client: Client
) -> None:
    before = studios.call(studios.store.jobs.for_user(0)).total
    with pytest.raises(AppError, match="steps 99 is not allowed"):
        client.predict(PROMPT, "", "your default", "", "99", "", False, api_name="/create")
    with pytest.raises(AppError, match="Write a prompt first"):
        client.predict("  ", "", "your default", "", "", "", False, api_name="/create")
    assert studios.call(studios.store.jobs.for_user(0)).total == before


def test_history_search_open_download_and_export(
    studios: Studios, client: Client, made: dict[str, Any]
) -> None:
    job_id = made["job_id"]
    gallery, info = client.predict("RED FOX", "", 0, api_name="/history")
    assert any(job_id in item["caption"] for item in gallery) and "Page 1 of" in info
    by_seed, _ = client.predict("", "8", 0, api_name="/history")
    assert any(job_id in item["caption"] for item in by_seed)
    none, info = client.predict("a blue whale", "", 0, api_name="/history")
    assert none == [] and "0 job(s)" in info

    view, images, links, opened = client.predict(job_id, api_name="/open_job")
    assert opened == job_id and "Seeds** 7, 8" in view and len(images) == 2
    assert f"download/{job_id}/1" in links

    row = studios.call(studios.store.jobs.by_public_id(job_id))
    image = httpx.get(f"{studios.local_url}/download/{job_id}/1")
    assert image.status_code == 200
    assert image.content == studios.store.image_path(row.images[1].path).read_bytes()
    assert httpx.get(f"{studios.local_url}/download/{job_id}/7").status_code == 404

    export = httpx.get(f"{studios.local_url}/export.zip")
    assert export.status_code == 200
    with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
        manifest = json.loads(archive.read("fluxbot-export.json"))
        names = archive.namelist()
    job = next(j for j in manifest["jobs"] if j["id"] == job_id)
    assert [i["seed"] for i in job["images"]] == [7, 8]
    assert all(i["file"] in names for i in job["images"])


def test_reroll_is_a_child_with_the_same_pixels(
    studios: Studios, client: Client, made: dict[str, Any]
) -> None:
    status, _, _gallery, _, child_id = client.predict(made["job_id"], api_name="/reroll")
    assert status == f"Done: `{child_id}`" and child_id != made["job_id"]
    parent = studios.call(studios.store.jobs.by_public_id(made["job_id"]))
    child = studios.call(studios.store.jobs.by_public_id(child_id))
    assert child.parent_id == parent.id and child.kind == "reroll"
    assert [i.sha256 for i in child.images] == [i.sha256 for i in parent.images]
    view, _, _, _ = client.predict(child_id, api_name="/open_job")
    assert f"Made from** `{made['job_id']}`" in view


def test_the_local_owner_sees_the_admin_page(studios: Studios, client: Client) -> None:
    cards, _queue = client.predict(api_name="/admin_status")
    assert "cpu" in cards and "images done" in cards
    assert client.predict(api_name="/pause").startswith("Paused")
    assert studios.engine.scheduler.paused
    assert client.predict(api_name="/resume") == "Resumed."
    assert not studios.engine.scheduler.paused


def _wait_for_status(studios: Studios, job_id: str, within_s: float = 120.0) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        row = studios.call(studios.store.jobs.by_public_id(job_id))
        if row is not None and JobStatus(row.status).finished:
            return row
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_a_browser_that_goes_away_does_not_cancel_or_lose_the_job(studios: Studios) -> None:
    studios.engine.scheduler.pause()  # so the job is surely still waiting when we leave
    try:
        leaving = Client(studios.local_url + "/", verbose=False)
        job = leaving.submit(
            "a paper boat --steps 1", "", "your default", "", "", "", False, api_name="/create"
        )
        first = next(iter(job))
        job_id = first[4]
        assert "Queued" in first[0] and job_id
        job.cancel()
        leaving.close()
    finally:
        studios.engine.scheduler.resume()
    row = _wait_for_status(studios, job_id)
    assert row.status is JobStatus.DONE and len(row.images) == 1


def test_the_admin_queue_shows_waiting_jobs_and_cancels_them(
    studios: Studios, client: Client
) -> None:
    studios.engine.scheduler.pause()
    try:
        job = client.submit(
            "a tin robot --steps 1", "", "your default", "", "", "", False, api_name="/create"
        )
        job_id = next(iter(job))[4]
        _, queue = client.predict(api_name="/admin_status")
        rows = {row[0]: row for row in queue["data"]}
        assert rows[job_id][1] == "0" and rows[job_id][3] == "queued"
        assert client.predict(job_id, api_name="/admin_cancel") == f"Cancelled job `{job_id}`."
        assert job.result(timeout=60)[0] == f"Job `{job_id}` was cancelled."
    finally:
        studios.engine.scheduler.resume()
    assert _wait_for_status(studios, job_id).status is JobStatus.CANCELLED


def test_animate_makes_the_gif_between_two_seeds(studios: Studios, client: Client) -> None:
    status, _, gif, details, job_id = client.predict(
        "a drifting cloud --steps 1", "3", "9", 2, api_name="/animate"
    )
    assert status == f"Done: `{job_id}`" and "3 → 9 (2 frames)" in details
    row = studios.call(studios.store.jobs.by_public_id(job_id))
    assert row.kind == "animate" and row.images[0].format == "gif"
    assert Path(gif).read_bytes()[:6] in (b"GIF87a", b"GIF89a")
