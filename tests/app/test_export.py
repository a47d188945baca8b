"""`export_user`: a zip of one user's images plus a JSON of what made them."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image as PILImage

from fluxbot.app.export import MANIFEST_NAME, UnknownUser, export_user
from fluxbot.core.requests import GenerationRequest, JobKind
from fluxbot.store import EncodedImage, Store
from tests.store.helpers import encoded, make_request


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (32, 16), color).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_export_holds_the_users_images_and_parameters(store: Store, tmp_path: Path) -> None:
    request = make_request("a lighthouse at dusk", seed=77, count=2, negative="fog")
    job = await store.jobs.create(1, request)
    pngs = [_png((255, 0, 0)), _png((0, 0, 255))]
    images = [
        EncodedImage(data, seed, 32, 16) for data, seed in zip(pngs, request.seeds, strict=True)
    ]
    await store.finish_job(job, images, timings={"total": 3.5})
    reroll = await store.jobs.create(
        1, make_request(seed=78), kind=JobKind.REROLL, parent_id=job.id
    )
    other = await store.jobs.create(2, make_request("not mine", seed=5))
    await store.finish_job(other, [encoded(5)])

    out = tmp_path / "exports" / "user1.zip"
    report = await export_user(store, 1, out)

    assert (report.jobs, report.images, report.missing) == (2, 2, [])
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read(MANIFEST_NAME))
        names = set(archive.namelist())
        assert manifest["user"]["id"] == "1"
        first, second = manifest["jobs"]
        assert first["id"] == job.public_id and second["parent"] == job.public_id
        assert second["kind"] == "reroll" and second["id"] == reroll.public_id
        assert GenerationRequest.from_params(first["params"]) == request
        assert first["timings"] == {"total": 3.5}
        assert [entry["seed"] for entry in first["images"]] == [77, 78]
        for entry, data in zip(first["images"], pngs, strict=True):
            assert entry["file"] in names
            payload = archive.read(entry["file"])
            assert payload == data
            assert hashlib.sha256(payload).hexdigest() == entry["sha256"]
            assert PILImage.open(io.BytesIO(payload)).size == (32, 16)
        assert all("not mine" not in json.dumps(j) for j in manifest["jobs"])
        assert names == {MANIFEST_NAME, *(e["file"] for e in first["images"])}
        assert [s["seed"] for s in manifest["seeds"]] == [78, 77]
    assert not list(out.parent.glob("*.tmp"))


async def test_export_reports_missing_files_and_unknown_users(store: Store, tmp_path: Path) -> None:
    job = await store.finish_job(await store.jobs.create(1, make_request(seed=1)), [encoded(1)])
    store.image_path(job.images[0].path).unlink()  # someone cleaned the disk by hand
    report = await export_user(store, 1, tmp_path / "a.zip")
    assert report.images == 0 and report.missing == [job.images[0].path]
    assert "1 image file(s) were missing" in report.summary(1)
    with pytest.raises(UnknownUser, match="999"):
        await export_user(store, 999, tmp_path / "b.zip")
    assert not (tmp_path / "b.zip").exists()
